"""``train_swap``: the training run of ``dfk train-swap`` as a Python function.

Starts a model directory or resumes it (``iterations`` is the total step to reach), then loops:
one ``SwapTrainer.step`` per iteration, ``log.csv`` rows, previews, background checkpoints. A
NaN/inf loss rolls back to the last checkpoint with a lower learning rate; Ctrl-C saves first.
A new model can start from another model's weights (``init_from``): the shared encoder, or all.

Under ``torchrun --nproc_per_node=N`` the same call is one data-parallel run: each rank trains
``train.batch_size`` faces per identity (the global batch is N times that) and only rank 0
writes the model folder (checkpoints, config.yaml, state.json, log.csv, loss.png, previews,
TensorBoard, the progress bar); the others read a checkpoint to resume or roll back, never write.

Steps never wait for the device. Losses are summed on the device; at every logging, preview and
checkpoint step those sums (and whether every weight is finite) come to the host in one
transfer, all-reduced over the ranks, so every rank sees the same verdict. A NaN/inf found there
rolls every rank back to the last checkpoint together. Non-finite steps are not skipped: their
optimiser steps may have spread NaN into the weights, but nothing is logged, previewed or saved
before the check, so the rollback restores the checkpoint (at most ``log_every`` steps are lost).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torchvision
from tqdm import tqdm

from deepfake_cli import __version__
from deepfake_cli.checkpoint import MODEL_FILE
from deepfake_cli.config import to_dict
from deepfake_cli.errors import CheckpointError, ConfigError, InputError, TrainingError
from deepfake_cli.media.alignments import Alignments
from deepfake_cli.runtime import (
    barrier,
    distributed_group,
    is_distributed,
    rank,
    rank_device,
    same_on_every_rank,
    world_size,
)
from deepfake_cli.swap.data import FaceSet, load_faces, model_coverage
from deepfake_cli.swap.models import SIDES
from deepfake_cli.monitor import (
    LOG_FILE,
    PLOT_FILE,
    TENSORBOARD_DIR,
    TrainingLog,
    tensorboard_writer,
    write_preview,
)
from deepfake_cli.swap.schema import ARCHITECTURE_KEYS, SwapConfig, validate
from deepfake_cli.swap.store import TRAINING_FILE, Checkpoint, ModelStore, check_resumable
from deepfake_cli.swap.trainer import SwapTrainer
from deepfake_cli.training import LossInterval, loss_text, run_config
from deepfake_cli.training import TrainSummary as BaseSummary

log = logging.getLogger(__name__)

DEFAULT_PRESET = "original"
# glibc mallopt parameters and their defaults (see reusing_freed_memory).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
INIT_PARTS = ("encoder", "all")  # what ``init_from`` loads; ``encoder`` = every weight outside the decoders
# Architecture keys that shape only the per-identity decoders (and a gan's discriminators): an
# ``encoder`` init may change them. Every other architecture key, and any added later, must match.
DECODER_ONLY_KEYS = frozenset({"model.kind", "model.decoder_widths", "model.discriminator_widths"})


@dataclass
class TrainSummary(BaseSummary):
    """The outcome of one ``train_swap`` call: also its speed and its NaN rollbacks."""

    faces_per_s: float = 0.0
    rollbacks: int = 0

    def head(self) -> str:
        return super().head() + f" ({self.faces_per_s:.1f} faces/s)"

    def details(self) -> list[str]:
        return [loss_text(self.losses, names=lambda name: name.endswith("_recon")),
                f"{self.rollbacks} NaN rollbacks" if self.rollbacks else ""]


def _run_info(config: SwapConfig, faces: dict[str, FaceSet], seed: int,
              init_from: dict[str, Any] | None = None, ranks: int = 1) -> dict[str, Any]:
    """The bookkeeping part of ``state.json`` (``load_swap_model`` reads the alignment part);
    ``world_size`` is the number of ranks of the run that wrote it."""
    extract = faces["a"].alignments or Alignments()
    info = {
        "family": "swap",
        "kind": config.model.kind,
        "size": config.model.size,
        "coverage": model_coverage(faces["a"].alignments, config.data.crop),
        "alignment": {"extract_coverage": extract.coverage, "extract_size": extract.size,
                      "crop": config.data.crop, "from_alignments": faces["a"].alignments is not None},
        "faces": {side: {"folder": str(faces[side].folder), "count": len(faces[side])} for side in SIDES},
        "seed": seed,
        "world_size": ranks,
        "versions": {"dfk": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__},
    }
    if init_from is not None:
        info["init_from"] = init_from
    return info


def _check_coverages(faces: dict[str, FaceSet]) -> None:
    found = {side: alignments.coverage for side in SIDES if (alignments := faces[side].alignments) is not None}
    if len(set(found.values())) > 1:
        log.warning("face sets were extracted with different coverage (A %s, B %s): swapped faces will "
                    "be scaled wrongly; re-extract one with the other's --coverage", found["a"], found["b"])


def _spread(images: torch.Tensor, count: int) -> torch.Tensor:
    """Up to ``count`` faces picked evenly across the set (the same ones at every preview)."""
    index = torch.linspace(0, len(images) - 1, min(count, len(images))).round().long()
    return images[index.to(images.device)]


@dataclass
class _Check:
    """What a logging/preview/save step learns from the device, the same on every rank."""

    nonfinite: list[str]  # losses (and "weights") that were NaN/inf since the last row
    means: dict[str, float]  # each loss's mean over the interval's steps and every rank
    out_of_time: bool  # some rank passed the time limit
    seconds: float  # time spent waiting for the device and the other ranks


class _Run:
    """The mutable state of one training session (step, log, rollbacks) around a trainer.

    ``writer`` (rank 0) writes the model folder; other ranks only ever read it.
    """

    def __init__(self, trainer: SwapTrainer, store: ModelStore, info: dict[str, Any], step: int,
                 seconds_before: float, writer: bool = True) -> None:
        self.trainer, self.store, self.info, self.step = trainer, store, info, step
        self.seconds_before = seconds_before  # training time of earlier sessions
        self.config = trainer.config
        self.writer = writer
        self.log = TrainingLog(store.folder / LOG_FILE, trainer.loss_names, resume_step=step,
                               writer=tensorboard_writer(store.folder / TENSORBOARD_DIR)) if writer else None
        self.rollbacks = 0
        count = self.config.train.preview_faces
        self.preview_faces = ({side: _spread(trainer.faces[side].images, count).to(trainer.device) for side in SIDES}
                              if writer else {})

    def save(self, seconds: float, background: bool = True) -> None:
        """Checkpoint the current step (``seconds``: training time of this session so far); rank 0 only."""
        if not self.writer:
            return
        info = {**self.info, "lr_scale": self.trainer.lr_scale, "rollbacks": self.rollbacks,
                "seconds": round(self.seconds_before + seconds, 1), "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.store.save(self.step, self.trainer.model_state(), self.trainer.training_state(), info,
                        self.config.train.keep_backups, background=background)
        if self.log is not None and self.log.rows:
            self.log.plot(self.store.folder / PLOT_FILE)

    def preview(self) -> None:
        """Write the preview grid of the current step; rank 0 only."""
        if self.writer:
            write_preview(self.store.folder, self.step, self.trainer.preview(self.preview_faces))

    def append_log(self, values: dict[str, float]) -> None:
        """Add a ``log.csv`` row; rank 0 only."""
        if self.log is not None:
            self.log.append(values)

    def check(self, interval: LossInterval, over_time: bool) -> _Check:
        """Bring the interval's loss sums, whether every weight is finite and ``over_time`` to the
        host in one transfer, summed over the ranks (one all-reduce under torchrun)."""
        started = time.perf_counter()
        flags = [~self.trainer.weights_finite(), torch.tensor(float(over_time), device=self.trainer.device)]
        totals, (weights_bad, late) = interval.all_reduce(self.trainer.loss_names, flags)
        nonfinite = [name for name, value in totals.items() if not math.isfinite(value)]
        if weights_bad > 0:
            nonfinite.append("weights")
        means = {name: value / (interval.steps * world_size()) for name, value in totals.items()}
        return _Check(nonfinite, means, late > 0, time.perf_counter() - started)

    def locally_finite(self, interval: LossInterval) -> bool:
        """Whether this rank's losses since the last row and its weights are finite (host sync)."""
        sums = [value.float() for value in interval.sums.values()]
        return bool(self.trainer.weights_finite()) and all(math.isfinite(float(value)) for value in sums)

    def rollback(self, names: list[str], since: int) -> None:
        """Reload the last checkpoint with a lower learning rate on every rank, or stop if this keeps
        happening. Rank 0 wrote that checkpoint; the others read it once it is on disk."""
        self.rollbacks += 1
        train = self.config.train
        error = ", ".join(names)
        if self.rollbacks > train.max_rollbacks:
            raise TrainingError(f"loss became NaN/inf ({error}) again after {train.max_rollbacks} rollbacks; "
                                "try a lower train.lr or train.precision=fp32")
        failed_at, scale = self.step, self.trainer.lr_scale * train.nan_lr_factor
        if self.writer:
            self.store.wait()  # a background save in flight finishes first
        barrier()
        checkpoint = load_everywhere(self.store)
        if checkpoint is None:
            raise CheckpointError("no checkpoint to roll back to", str(self.store.folder))
        self.step = restore(self.trainer, checkpoint)
        self.trainer.set_lr_scale(scale)
        if self.log is not None:
            self.log.truncate(self.step)
        log.warning("non-finite loss (%s) in steps %d-%d: rolled back to step %d, learning rate x%.3g",
                    error, since + 1, failed_at, self.step, scale)


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """While training on a CPU, make glibc keep freed memory for reuse instead of unmapping it.

    Every step allocates and frees the same large tensors (bf16 weight copies, gradients); served
    by ``mmap``, each one page-faults in afresh, which cost ~20% of a step of the Original model
    here. Afterwards glibc's defaults come back and the kept memory is returned. A no-op where the
    C library has no ``mallopt`` (not glibc).
    """
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    if libc is None or not hasattr(libc, "mallopt"):
        yield
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


@dataclass
class InitSource:
    """The weights a new model starts from (``init_from``), already checked against its config."""

    folder: Path
    parts: str
    step: int
    model: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What ``state.json`` keeps of it."""
        return {"model": str(self.folder), "parts": self.parts, "step": self.step}


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def read_init_source(folder: str | Path, parts: str, config: SwapConfig) -> InitSource:
    """Load the weights of model folder ``folder`` for a new model of ``config``.

    ``InputError`` when it holds no model, ``ConfigError`` when an architecture key that matters
    for ``parts`` differs (``encoder`` ignores the keys of the decoders and discriminators).
    """
    if parts not in INIT_PARTS:
        raise ConfigError(f"--init-parts must be one of {', '.join(INIT_PARTS)}; got {parts!r}")
    source = ModelStore(folder)
    if not source.folder.is_dir():
        raise InputError("--init-from: no such model folder", str(source.folder))
    if not source.has_checkpoint:
        raise InputError(f"--init-from: no {MODEL_FILE} here; point it at a model folder written by dfk train-swap",
                         str(source.folder))
    old, new = to_dict(source.read_config()), to_dict(config)
    keys = [key for key in ARCHITECTURE_KEYS if parts == "all" or key not in DECODER_ONLY_KEYS]
    differing = [f"{key} {_lookup(old, key)} vs {_lookup(new, key)}" for key in keys
                 if _lookup(old, key) != _lookup(new, key)]
    if differing:
        raise ConfigError(f"--init-from {source.folder}: architecture differs (source vs this run: "
                          + "; ".join(differing) + ")")
    checkpoint = source.load_model()
    return InitSource(source.folder, parts, checkpoint.step, checkpoint.model)


def _load_part(module: torch.nn.Module, state: Any, wanted: set[str], where: str) -> None:
    """Load ``state`` into the ``wanted`` entries of ``module.state_dict()``; any mismatch of names
    or shapes is a ``CheckpointError`` naming the first few."""
    if not isinstance(state, dict):
        raise CheckpointError("not a dfk swap checkpoint (weights are not a state dict)", where)
    target = module.state_dict()
    problems = [f"missing {key}" for key in sorted(wanted - state.keys())]
    problems += [f"unexpected {key}" for key in sorted(state.keys() - wanted)]
    problems += [f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}" if isinstance(value, torch.Tensor)
                 else f"{key} is not a tensor" for key, value in sorted(state.items())
                 if key in wanted and not (isinstance(value, torch.Tensor) and value.shape == target[key].shape)]
    if not problems:
        try:
            module.load_state_dict(state, strict=False)
            return
        except RuntimeError as exc:
            problems = [" ".join(str(exc).split())]
    shown = "; ".join(problems[:3]) + (f"; ... ({len(problems)} in all)" if len(problems) > 3 else "")
    raise CheckpointError(f"weights do not fit the configured model: {shown}", where)


def apply_init(trainer: SwapTrainer, source: InitSource) -> None:
    """Copy the ``source.parts`` weights into the freshly built ``trainer`` (optimisers untouched)."""
    where = f"--init-from {source.folder / MODEL_FILE}"
    encoder_only = source.parts == "encoder"
    generator, fresh = source.model.get("generator"), trainer.generator.decoder_parts if encoder_only else ()
    if isinstance(generator, dict):
        generator = {key: value for key, value in generator.items() if not key.startswith(fresh)}
    wanted = {key for key in trainer.generator.state_dict() if not key.startswith(fresh)}
    _load_part(trainer.generator, generator, wanted, where)
    loaded = "shared encoder weights; decoders start afresh" if encoder_only else "all generator weights"
    if not encoder_only and trainer.discriminators is not None:
        if "discriminators" in source.model:
            _load_part(trainer.discriminators, source.model["discriminators"],
                       set(trainer.discriminators.state_dict()), where)
            loaded = "all weights (generator and discriminators)"
        else:
            loaded += "; the source has no discriminators, they start afresh"
    log.info("new model starts from %s (step %d): %s", source.folder, source.step, loaded)


def load_everywhere(store: ModelStore) -> Checkpoint | None:
    """The model folder's checkpoint (None without one), read by every rank, which then compare
    the step they read: a rank that does not share rank 0's folder (or reads another checkpoint)
    stops every rank with one error instead of leaving them waiting. A failure to load stops every
    rank alike."""
    try:
        checkpoint = store.load() if store.has_checkpoint else None
        seen: object = None if checkpoint is None else checkpoint.step
    except CheckpointError as exc:
        checkpoint, seen, failure = None, f"unloadable: {exc}", exc
    same_on_every_rank(seen, "the checkpoint", store.folder)
    if isinstance(seen, str):
        raise failure
    return checkpoint


def restore(trainer: SwapTrainer, checkpoint: Checkpoint) -> int:
    """Load a checkpoint into ``trainer``; returns its step."""
    trainer.load_model_state(checkpoint.model, MODEL_FILE)
    if checkpoint.training is not None:
        trainer.load_training_state(checkpoint.training, TRAINING_FILE)
    else:
        trainer.reset_scalers()
    return checkpoint.step


def swap_config(model_dir: str | Path, preset: str | None = None, config_file: str | Path | None = None,
                overrides: Sequence[str] = ()) -> SwapConfig:
    """The run's config: ``preset`` (default ``original``), ``config_file`` and ``overrides`` merged.

    Without a preset or file, a model folder that already has a ``config.yaml`` resumes with it.
    """
    return run_config(SwapConfig, "swap", DEFAULT_PRESET, validate, model_dir, preset, config_file, overrides)


def train_swap(faces_a: str | Path, faces_b: str | Path, model_dir: str | Path, config: SwapConfig,
               device: str = "auto", seed: int = 0, progress: bool = False,
               minutes: float | None = None, init_from: str | Path | None = None,
               init_parts: str = "encoder") -> TrainSummary:
    """Train (or resume training) a swap model on two extract folders until ``config.train.iterations``,
    or until ``minutes`` of training time have passed in this call (then it saves and returns).

    ``init_from`` starts a new model (not a resume) from the weights of another model folder:
    ``init_parts="encoder"`` takes the shared conv encoder (every weight outside ``decoder_parts``), ``"all"`` the
    whole generator and a gan's discriminators; optimiser state, step and log start afresh.

    Under torchrun every rank makes this call: it joins the process group (and leaves it after) unless
    the caller already did, trains ``config.train.batch_size`` faces per identity per rank, and only
    rank 0 writes ``model_dir``; the summary is the same on every rank.

    Raises ``ConfigError`` for an invalid config or a resume/init with a different architecture,
    ``InputError`` for missing/too few faces, a missing ``init_from`` model or ``init_from`` onto a
    folder with a checkpoint, ``BackendError`` when perceptual weights are missing,
    ``CheckpointError`` for unsafe, corrupt or unfitting checkpoints and ``TrainingError`` for
    repeated NaNs.
    """
    validate(config)
    if init_parts not in INIT_PARTS:
        raise ConfigError(f"--init-parts must be one of {', '.join(INIT_PARTS)}; got {init_parts!r}")
    store = ModelStore(model_dir)
    if store.has_checkpoint and init_from is not None:
        raise InputError(f"model folder {store.folder} already has a checkpoint; --init-from starts new models only; "
                         "drop --init-from to resume")
    if store.has_checkpoint:
        changed = check_resumable(store.read_config(), config)
        if changed:
            log.info("resuming with changed settings: %s", "; ".join(changed))
    init = read_init_source(init_from, init_parts, config) if init_from is not None else None
    torch_device = rank_device(device)  # under torchrun: cuda:LOCAL_RANK, or the CPU
    with distributed_group(torch_device) as distributed:
        writer, ranks = rank() == 0, world_size()
        loss = config.loss
        faces = {side: load_faces(folder, config.model.size, config.data.crop, loss.eye, loss.mouth, torch_device,
                                  loss.background, config.train.stream)
                 for side, folder in zip(SIDES, (faces_a, faces_b), strict=True)}
        _check_coverages(faces)
        trainer = SwapTrainer(config, faces, torch_device, seed, rank=rank())
        init_record = None
        if init is not None:
            apply_init(trainer, init)
            init_record, init = init.record(), None  # let the source's tensors go
        checkpoint = load_everywhere(store)  # every rank reads it
        if checkpoint is not None:
            init_record = checkpoint.info.get("init_from")  # a resumed model keeps what it started from
            saved_ranks = int(checkpoint.info.get("world_size", 1))
            if saved_ranks != ranks:
                log.info("resuming a model trained on %d rank(s) on %d: the global batch is now %d faces per "
                         "identity", saved_ranks, ranks, ranks * config.train.batch_size)
        step = restore(trainer, checkpoint) if checkpoint is not None else 0
        summary = TrainSummary(store.folder, step, step)
        if step >= config.train.iterations:
            return summary
        if distributed:
            trainer.distribute()
        barrier()  # every rank has read the folder before rank 0 writes to it
        if writer:
            store.write_config(config)
        seconds_before = float(checkpoint.info.get("seconds", 0.0)) if checkpoint is not None else 0.0
        run = _Run(trainer, store, _run_info(config, faces, seed, init_record, ranks), step, seconds_before,
                   writer=writer)
        with reusing_freed_memory() if torch_device.type == "cpu" else contextlib.nullcontext():
            if checkpoint is None:
                run.save(0.0)  # a step-0 checkpoint makes every later NaN rollback possible
            _loop(run, summary, progress and writer, None if minutes is None else 60.0 * minutes)
        barrier()  # rank 0's last checkpoint is on disk when any rank returns
    return summary


def _loop(run: _Run, summary: TrainSummary, progress: bool, time_limit: float | None) -> None:
    """Train up to ``train.iterations`` or ``time_limit`` seconds; every logging, preview and save
    step first checks the losses since the last row (``_Run.check``): a NaN/inf rolls back."""
    train = run.config.train
    distributed = is_distributed()
    faces_per_step = 2 * train.batch_size * world_size()  # the global batch: every rank's faces
    interval, checked = LossInterval(), run.step
    bar = tqdm(total=train.iterations, initial=run.step, unit="step", disable=not progress, dynamic_ncols=True)
    out_of_time = False
    try:
        while run.step < train.iterations and not out_of_time:
            started = time.perf_counter()
            losses = run.trainer.step(run.step)
            elapsed = time.perf_counter() - started
            run.step += 1
            summary.seconds += elapsed
            interval.add(losses, elapsed)
            bar.update(1)
            over_time = time_limit is not None and summary.seconds >= time_limit
            # One process stops as soon as its time is up; ranks agree on stopping at the next check.
            out_of_time = over_time and not distributed
            log_now = run.step % train.log_every == 0 or run.step == train.iterations
            preview_now = run.step % train.preview_every == 0 or run.step == train.iterations
            save_now = run.step % train.save_every == 0 and run.step < train.iterations
            if not (log_now or preview_now or save_now or out_of_time):
                continue
            check = run.check(interval, over_time)
            summary.seconds += check.seconds
            interval.seconds += check.seconds
            out_of_time = out_of_time or check.out_of_time
            if check.nonfinite:
                run.rollback(check.nonfinite, checked)
                interval, checked = LossInterval(), run.step
                bar.reset(total=train.iterations)
                bar.update(run.step)
                continue  # when out of time, the loop ends and saves the restored step
            checked = run.step
            if log_now:
                summary.losses = check.means
                speed = faces_per_step * interval.steps / max(interval.seconds, 1e-9)
                run.append_log({"step": run.step, "seconds": run.seconds_before + summary.seconds,
                                "faces_per_s": speed, "lr": run.trainer.opt_g.param_groups[0]["lr"],
                                **summary.losses})
                shown = {k: v for k, v in summary.losses.items() if k.endswith("_recon") or k.startswith("d_")}
                bar.set_postfix_str(" ".join(f"{k} {v:.4f}" for k, v in shown.items()) + f" {speed:.1f} faces/s")
                interval = LossInterval()
            if preview_now:
                run.preview()
            if save_now:
                run.save(summary.seconds)
        run.save(summary.seconds, background=False)  # every step up to here has been checked
    except KeyboardInterrupt:
        bar.close()
        if run.writer and run.locally_finite(interval):
            run.save(summary.seconds, background=False)
            log.warning("interrupted: saved step %d to %s", run.step, run.store.folder)
        elif run.writer:
            log.warning("interrupted: losses or weights were NaN/inf at step %d; %s keeps its last checkpoint",
                        run.step, run.store.folder)
        raise
    finally:
        bar.close()
        if run.log is not None:
            run.log.close()
    summary.step, summary.rollbacks = run.step, run.rollbacks
    summary.faces_per_s = faces_per_step * (run.step - summary.start_step) / max(summary.seconds, 1e-9)
