"""Benchmark ``train-swap`` training speed; prints one JSON line.

    python scripts/bench_train_swap.py --preset original --batch-size 16 [--precision fp32|bf16]

faces_per_s counts A+B faces per second of full training steps (augmentation, forward, backward,
optimiser) after warm-up, on random faces held in memory. gflop_per_face is counted with
torch.utils.flop_counter over one step (forward + backward). peak_gflops is the best forward rate of
the model's own large 5x5 convolutions, alone, in the same process and precision; efficiency is
achieved / peak. save_block_s is how long a checkpoint save holds up training (the tensor copy);
save_total_s is the full background write of model.pt + training.pt.

    python scripts/bench_train_swap.py --curve-steps 40 --faces-a FACES_A --faces-b FACES_B

instead trains the same model from the same initial weights and batches in fp32 and in bf16 and
prints how far apart their reconstruction losses get (max_gap) and the final losses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_cli.runtime import autocast, configure_threads, resolve_device  # noqa: E402
from deepfake_cli.swap.data import FaceSet, load_faces  # noqa: E402
from deepfake_cli.swap.models import SIDES  # noqa: E402
from deepfake_cli.swap.store import ModelStore  # noqa: E402
from deepfake_cli.swap.train import reusing_freed_memory, swap_config  # noqa: E402
from deepfake_cli.swap.trainer import SwapTrainer  # noqa: E402


def random_faces(count: int, size: int, device: torch.device, seed: int) -> FaceSet:
    """A face set of random pixels (speed does not depend on content)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    weights = torch.ones(count, 1, size, size)
    return FaceSet(Path("."), images.to(device), weights.to(device), [f"{i}.png" for i in range(count)], None)


def step_flops(trainer: SwapTrainer) -> float:
    """FLOPs of one training step (forward + backward of every network)."""
    with FlopCounterMode(display=False) as counter:
        trainer.step(0)
    return float(counter.get_total_flops())


def conv_peak(trainer: SwapTrainer, batch: int, repeats: int) -> float:
    """Best GFLOP/s of the encoder's 5x5 convolutions (after the first) run alone (forward, same precision)."""
    device, dtype = trainer.device, trainer.dtype
    best, size = 0.0, trainer.config.model.size
    convs = [m for m in trainer.generator.encoder.convs.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (5, 5)]
    for conv in convs:
        x = torch.randn(batch, conv.in_channels, size, size, device=device)
        size //= 2
        if conv.in_channels == 3:  # the RGB input layer is too thin to show what the CPU can do
            continue
        flops = 2.0 * batch * size * size * conv.out_channels * conv.in_channels * 25
        with torch.no_grad(), autocast(device, dtype):
            for _ in range(2):
                conv(x)
            for _ in range(repeats):
                started = time.perf_counter()
                F.conv2d(x, conv.weight, conv.bias, 2, 2)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = max(best, flops / (time.perf_counter() - started) / 1e9)
    return best


def save_times(trainer: SwapTrainer) -> tuple[float, float, float]:
    """(seconds training is held up, seconds of the whole background save, model.pt MB)."""
    with tempfile.TemporaryDirectory() as folder:
        store = ModelStore(folder)
        started = time.perf_counter()
        store.save(1, trainer.model_state(), trainer.training_state(), {}, keep=0)
        blocked = time.perf_counter() - started
        store.wait()
        total = time.perf_counter() - started
        megabytes = os.path.getsize(Path(folder) / "model.pt") / 1e6
    return blocked, total, megabytes


def compare_precisions(preset: str, batch_size: int, steps: int, faces: dict[str, FaceSet],
                       device: torch.device, window: int = 10) -> dict[str, object]:
    """Train ``steps`` steps in fp32 and in bf16 from one seed; compare their recon loss curves.

    Single steps drift apart once the two runs' weights differ (the batches stay the same), so the
    curves are compared as means over windows of ``window`` steps.
    """
    curves = {}
    for precision in ("fp32", "bf16"):
        config = swap_config(tempfile.gettempdir() + "/dfk-bench-none", preset,
                             overrides=[f"train.batch_size={batch_size}", f"train.precision={precision}"])
        trainer = SwapTrainer(config, faces, device, seed=0)
        losses = [trainer.step(step) for step in range(steps)]
        recon = [float(item["a_recon"] + item["b_recon"]) / 2 for item in losses]
        curves[precision] = [sum(recon[i:i + window]) / len(recon[i:i + window]) for i in range(0, steps, window)]
    gaps = [abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"], strict=True)]
    return {"preset": preset, "batch_size": batch_size, "curve_steps": steps, "window": window,
            "recon_fp32": [round(v, 4) for v in curves["fp32"]], "recon_bf16": [round(v, 4) for v in curves["bf16"]],
            "max_window_gap": round(max(gaps), 5)}


PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def speed(trainer: SwapTrainer, steps: int, warmup: int, save: bool) -> dict[str, object]:
    """Training speed, FLOP count, conv peak and (optionally) checkpoint timings of ``trainer``."""
    device, batch_size = trainer.device, trainer.config.train.batch_size
    faces_per_step = 2 * batch_size
    flop_per_face = step_flops(trainer) / faces_per_step
    for step in range(warmup):
        trainer.step(step)
    started = time.perf_counter()
    for step in range(steps):
        trainer.step(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    faces_per_s = faces_per_step * steps / (time.perf_counter() - started)
    peak = conv_peak(trainer, faces_per_step, repeats=5)
    achieved = flop_per_face * faces_per_s / 1e9
    result: dict[str, object] = {
        "batch_size": batch_size, "device": str(device), "threads": torch.get_num_threads(),
        "precision": PRECISION_NAMES[trainer.dtype],
        "faces_per_s": round(faces_per_s, 2),
        "gflop_per_face": round(flop_per_face / 1e9, 3),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": round(peak, 1),
        "efficiency": round(achieved / peak, 3),
    }
    if save:
        blocked, total, megabytes = save_times(trainer)
        result.update(save_block_s=round(blocked, 2), save_total_s=round(total, 2), model_mb=round(megabytes, 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="original")
    parser.add_argument("--batch-size", type=int, default=16, help="faces per identity per step")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                        help="default: the preset's train.precision")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=8, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: DFK_THREADS or every core")
    parser.add_argument("--no-save", action="store_true", help="skip the checkpoint timing")
    parser.add_argument("--curve-steps", type=int, default=0, help="compare fp32 and bf16 loss curves instead")
    parser.add_argument("--faces-a", help="extract folder for A (default: random pixels)")
    parser.add_argument("--faces-b", help="extract folder for B (default: random pixels)")
    args = parser.parse_args()

    configure_threads(args.threads)
    device = resolve_device(args.device)
    overrides = [f"train.batch_size={args.batch_size}"]
    if args.precision:
        overrides.append(f"train.precision={args.precision}")
    config = swap_config(tempfile.gettempdir() + "/dfk-bench-none", args.preset, overrides=overrides)
    folders = {"a": args.faces_a, "b": args.faces_b}
    faces = {side: load_faces(folders[side], config.model.size, device=device) if folders[side]
             else random_faces(64, config.model.size, device, seed) for seed, side in enumerate(SIDES)}
    with reusing_freed_memory() if device.type == "cpu" else contextlib.nullcontext():  # as train_swap does
        if args.curve_steps:
            result = compare_precisions(args.preset, args.batch_size, args.curve_steps, faces, device)
        else:
            result = {"preset": args.preset,
                      **speed(SwapTrainer(config, faces, device, seed=0), args.steps, args.warmup, not args.no_save)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
