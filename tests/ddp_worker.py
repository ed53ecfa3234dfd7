"""Helper of tests/test_distributed.py: one rank of a torchrun job, or (imported) one plain process.

    torchrun --nproc_per_node=2 tests/ddp_worker.py fixed --preset tiny --steps 3 --out RESULT.pt [--device cuda]
    torchrun --nproc_per_node=2 tests/ddp_worker.py nan -A FACES_A -B FACES_B -o MODEL --nan-rank 1 --nan-call 15

``fixed`` trains ``SwapTrainer`` steps on fixed batches: every step's global batch is drawn from a
fixed seed and rank r of N trains on the r-th of N equal parts, so N ranks (averaging gradients)
and one process (the whole batch) compute the same thing; each rank also runs a single-process
twin through the same steps from the same state to measure that. Rank 0 saves the results.
``nan`` runs ``train_swap`` with a NaN in one rank's loss at one call.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from deepfake_cli.config import load_config
from deepfake_cli.runtime import distributed_group, rank, rank_device, world_size
from deepfake_cli.swap.augment import Batch
from deepfake_cli.swap.data import FaceSet
from deepfake_cli.swap.models import SIDES
from deepfake_cli.swap.schema import SwapConfig, validate
from deepfake_cli.swap.trainer import SwapTrainer

GLOBAL_BATCH = 8  # faces per identity per step, over all ranks
FIRST_STEP = 10  # the tiny-gan schedule turns the adversarial term on at step 10
# Every loss term of a gan: tiny-gan's (with the mask-to-hull term), plus DSSIM.
OVERRIDES = {"tiny": [], "tiny-gan": ["loss.ssim=0.5"]}


def fixed_batches(step: int, size: int, device: torch.device) -> dict[str, Batch]:
    """The global batch of ``step``: random faces and hulls, uniform loss weights (so a mean over
    the whole batch is the mean of the ranks' equal parts' means)."""
    generator = torch.Generator().manual_seed(1000 + step)
    batches = {}
    for side in SIDES:
        warped, target = (torch.rand(GLOBAL_BATCH, 3, size, size, generator=generator) for _ in range(2))
        hull = (torch.rand(GLOBAL_BATCH, 1, size, size, generator=generator) > 0.5).float()
        weight = torch.ones(GLOBAL_BATCH, 1, size, size)
        batches[side] = Batch(*(t.to(device) for t in (warped, target, weight, hull)))
    return batches


def _part(batch: Batch, index: int, parts: int) -> Batch:
    tensors = (batch.warped, batch.target, batch.weight, batch.hull)
    return Batch(*(None if t is None else t.chunk(parts)[index] for t in tensors))


def _tensors(trainer: SwapTrainer, kind: str) -> dict[str, torch.Tensor]:
    """Every weight (``weights``, state dict entries) or gradient (``grads``) of ``trainer``'s networks."""
    modules = {"generator": trainer.generator, "discriminators": trainer.discriminators}
    if kind == "weights":
        return {f"{name}.{key}": value.detach().clone() for name, module in modules.items() if module is not None
                for key, value in module.state_dict().items()}
    return {f"{name}.{key}": p.grad.detach().clone() for name, module in modules.items() if module is not None
            for key, p in module.named_parameters() if p.grad is not None}


def relative_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict[str, float]:
    """``all``: ``|got - want| / |want|`` over every tensor at once (L2 norms), and ``worst``: the
    largest such ratio of one tensor; both 1.0 if the names differ. A tensor whose values are at
    rounding level (a self-attention gamma starts at 0, so its first gradients are ~1e-5) has a
    large ``worst`` from float32 summation order alone, so the two get separate tolerances."""
    if got.keys() != want.keys():
        return {"all": 1.0, "worst": 1.0}
    keys = [k for k in want if want[k].is_floating_point()]
    diff = {k: float((got[k].double() - want[k].double()).norm()) for k in keys}
    size = {k: float(want[k].double().norm()) for k in keys}
    total = sum(d * d for d in diff.values()) ** 0.5 / (sum(n * n for n in size.values()) ** 0.5 + 1e-12)
    return {"all": total, "worst": max(diff[k] / (size[k] + 1e-8) for k in keys)}


def train_fixed(preset: str, steps: int, device: torch.device = torch.device("cpu"),
                extra: list[str] | None = None) -> dict[str, object]:
    """Train ``steps`` steps on this rank's part of the fixed batches.

    Returns the weights and the last step's gradients; with several ranks also, per step, how far
    the averaged gradients and the weights after the step are from those of a plain single-process
    twin that took the same step on the whole global batch from the same state. ``extra``: more
    ``key=value`` overrides (``model.arch=liae``).
    """
    config = validate(load_config(SwapConfig, "swap", preset, overrides=OVERRIDES[preset] + (extra or [])))
    size = config.model.size
    images = torch.randint(0, 256, (GLOBAL_BATCH, 3, size, size), dtype=torch.uint8, generator=torch.Generator())
    images, hulls = images.to(device), torch.ones(GLOBAL_BATCH, 1, size, size, dtype=torch.uint8, device=device)
    faces = {side: FaceSet(Path("."), images, None, [f"{i}.png" for i in range(GLOBAL_BATCH)], None, hulls)
             for side in SIDES}
    trainer = SwapTrainer(config, faces, device, seed=0, rank=rank())
    twin = SwapTrainer(config, faces, device, seed=0) if world_size() > 1 else None
    if world_size() > 1:
        trainer.distribute()
    errors = []
    for step in range(FIRST_STEP, FIRST_STEP + steps):
        global_batch = fixed_batches(step, size, device)
        if twin is not None:  # the same step from the same state on the whole batch, in one process
            twin.load_model_state(trainer.model_state(), "twin")
            twin.load_training_state(copy.deepcopy(trainer.training_state()), "twin")
            twin.train_batches(global_batch, step)
        trainer.train_batches({side: _part(global_batch[side], rank(), world_size()) for side in SIDES}, step)
        if twin is not None:
            errors.append({kind: relative_error(_tensors(trainer, kind), _tensors(twin, kind))
                           for kind in ("grads", "weights")})
    cpu = {kind: {k: v.cpu() for k, v in _tensors(trainer, kind).items()} for kind in ("weights", "grads")}
    return {**cpu, "errors": errors}


def train_with_nan(args: argparse.Namespace) -> None:
    """``train_swap`` (tiny preset) with the ``nan_call``-th L1 loss of rank ``nan_rank`` made NaN."""
    from deepfake_cli.swap import trainer as trainer_module
    from deepfake_cli.swap.train import swap_config, train_swap

    if rank() == args.nan_rank:
        real_l1, calls = trainer_module.weighted_l1, [0]

        def flaky_l1(*tensors: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            value = real_l1(*tensors)
            return value * float("nan") if calls[0] == args.nan_call else value

        trainer_module.weighted_l1 = flaky_l1
    config = swap_config(args.o, "tiny", overrides=["train.iterations=12", "train.save_every=5"])
    train_swap(args.A, args.B, args.o, config, device="cpu", seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("fixed", "nan"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--set", action="append", default=[], help="fixed: a key=value config override")
    parser.add_argument("--device", default="cpu", help="fixed: cpu (gloo) or cuda (NCCL, cuda:LOCAL_RANK)")
    parser.add_argument("-A")
    parser.add_argument("-B")
    parser.add_argument("-o")
    parser.add_argument("--nan-rank", type=int, default=1)
    parser.add_argument("--nan-call", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "nan":
        train_with_nan(args)  # train_swap joins the process group itself
        return
    device = rank_device(args.device)
    if device.type == "cuda":  # full fp32: TF32 rounding would hide what is compared
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with distributed_group(device):
        result = train_fixed(args.preset, args.steps, device, args.set)
        if rank() == 0:
            torch.save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
