"""Benchmark detection throughput; prints one JSON line.

Measures, for a detector preset (default ``convlstm``):

- preprocessing: reading an aligned face PNG, Canny edges with automatic thresholds, resizing;
- model: the forward pass on batches (inference: on-device normalisation of the uint8 faces and
  the model), and a training step;

and combines them into sequences/s and videos/min for videos of ``--frames`` frames scored with
non-overlapping sequences (every face preprocessed once). A frame model (``tiny_frame``,
``efficientnet_*``, ``mobilenet_v2``) scores every face once: its unit is one face, so
``sequences_per_s`` is faces/s there (``unit`` says which). Face detection and alignment (the
extract stage, cached by dfk) are not included. Faces come from a synthetic public-domain clip;
the model is freshly initialised (the weights do not change the speed).

    python scripts/bench_detect.py [--preset convlstm] [--device auto] [--frames 300] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect.config import DetectConfig
from deepfake_cli.detect.detector import build_model
from deepfake_cli.detect.preprocess import prepare_frame
from deepfake_cli.extract import ExtractOptions, extract
from deepfake_cli.media.images import read_image
from deepfake_cli.media.synthetic import make_clip, write_clip
from deepfake_cli.runtime import autocast, autocast_dtype, configure_threads, resolve_device


def median_seconds(step: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall time of ``step`` over ``repeats`` runs, after one warm-up run."""
    step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def face_files(folder: Path, size: int) -> list[Path]:
    """Aligned face PNGs extracted from a 30-frame synthetic clip."""
    clip = write_clip(folder / "clip.mp4", make_clip("astronaut", 30, (320, 240), seed=1).frames)
    extract([clip], folder / "faces", ExtractOptions(size=size), progress=False)
    return sorted((folder / "faces").glob("*.png"))


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="convlstm")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=300, help="frames per video (DFDC: 10 s at 30 fps)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    args = parser.parse_args()

    configure_threads(args.threads)
    config = load_config(DetectConfig, "detect", args.preset)
    device = resolve_device(args.device)
    dtype = autocast_dtype(device, config.train.precision)
    seq = config.sequence
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory() as tmp:
        files = face_files(Path(tmp), config.faces.size)
        frames = [prepare_frame(read_image(f), seq.size, seq.input, seq.canny_sigma) for f in files]
        preprocess = median_seconds(
            lambda: [prepare_frame(read_image(f), seq.size, seq.input, seq.canny_sigma) for f in files],
            args.repeats, lambda: None) / len(files)

    torch.manual_seed(0)
    model = build_model(config).to(device)
    per_unit = 1 if model.kind == "frame" else seq.frames  # faces per scored unit (face or sequence)
    batch = np.stack([np.stack([frames[(i + t) % len(frames)] for t in range(per_unit)])
                      for i in range(args.batch_size)])
    if model.kind == "frame":
        batch = batch[:, 0]
    pixels = torch.from_numpy(batch).to(device)  # uint8, as the data loader delivers them
    x = model.normalise(pixels)
    y = torch.tensor([float(i % 2) for i in range(args.batch_size)], device=device)

    def infer() -> None:
        """One inference batch, from uint8 pixels."""
        with torch.no_grad(), autocast(device, dtype):
            model(model.normalise(pixels))

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)

    def train_step() -> None:
        """One optimisation step on the batch."""
        with autocast(device, dtype):
            logits = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.eval()
    model_per_sequence = median_seconds(infer, args.repeats, sync) / args.batch_size
    model.train()
    train_per_sequence = median_seconds(train_step, args.repeats, sync) / args.batch_size

    preprocess_per_sequence = preprocess * per_unit
    per_sequence = preprocess_per_sequence + model_per_sequence
    sequences_per_video = -(-args.frames // per_unit)
    print(json.dumps({
        "preset": args.preset,
        "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "unit": "face" if model.kind == "frame" else "sequence",
        "input": f"{per_unit} x {seq.input} {seq.size}px",
        "parameters": sum(p.numel() for p in model.parameters()),
        "sequences_per_s": round(1.0 / per_sequence, 2),
        "videos_per_min": round(60.0 / (sequences_per_video * per_sequence), 2),
        "frames_per_video": args.frames,
        "preprocess_ms_per_sequence": round(1000 * preprocess_per_sequence, 2),
        "model_ms_per_sequence": round(1000 * model_per_sequence, 2),
        "preprocess_share": round(preprocess_per_sequence / per_sequence, 3),
        "train_sequences_per_s": round(1.0 / train_per_sequence, 2),
        "excludes": "face detection and alignment (extract stage, cached)",
    }))


if __name__ == "__main__":
    main()
