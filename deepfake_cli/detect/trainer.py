"""Training a detector: split by source group, balance classes, early-stop on validation AUC.

``train_detector`` is the Python API behind ``dfk train-detect``. It writes into the detector
directory ``model.pt`` (best epoch, weights only), ``config.yaml``, ``state.json`` (with the
decision threshold), ``log.csv``, ``metrics.json``, ``roc.png`` and ``training.png``; the faces it
extracted stay cached in ``faces/``.

The protocol (see ``splits``): validation picks the epoch and, unless ``train.threshold`` is a
fixed probability, the threshold (``eer``: the EER point of the validation videos; ``fpr:P``: the
threshold keeping the validation real videos' false-positive rate at or below P); ``state.json``
and ``metrics.json`` record it and ``threshold_from``, the rule that set it. A test part, when
there is one, is scored once at the end and picks nothing. ``metrics.json`` names every block
after the part it was computed on (``val``, ``test``). With ``folds > 1`` each fold trains in ``fold<k>/``; the report
gives each fold's numbers in ``folds`` and mean ± std over folds in ``cross_validation`` (never
one fold's numbers as the result); the model of the fold with the best validation score is kept
at the top level for ``dfk detect``, and ``kept_fold_reason`` says so: that score is the fold's
own validation score (it also chose the fold's epoch and threshold), so the kept fold's val
figures are optimistic and the cross-validation mean ± std is the figure to quote.
``inputs.json`` lists the inputs each part used (``dfk calibrate`` refuses them).

With ``train.synthetic: sbi`` every real video also gets a self-blend twin whose fakes are made
on the fly (``synthetic``); ``metrics.json`` then has a ``synthetic`` block and each fit names
the fakes each part used (``fakes``: given, sbi or both).

Running the same call on the same ``outdir`` resumes it from the last complete epoch (``resume``:
``run.json``, ``resume/`` per fit); a finished run returns its ``metrics.json`` (with
``already_done``), a folder of other settings is refused. A non-finite loss rolls back to the last
complete epoch with the learning rate times ``train.nan_lr_factor``, at most
``train.max_rollbacks`` times.

Under ``torchrun --nproc_per_node=N`` the same call is one data-parallel run (DDP: NCCL on CUDA,
each rank on its own GPU; gloo on the CPU), in a process group whose collectives wait at most
``train.dist_timeout`` minutes. Every rank first reads back the ``run.json`` rank 0 stamped (a
rank that does not share the output folder stops every rank with one error), then extracts and
caches the faces of its share of the inputs and, after a barrier, reads them all from the cache.
Each epoch every rank trains ``train.batch_size`` samples per step on its own share of the same
shuffled order (the global batch is N times that); the non-finite check is summed over the
ranks, so all roll back (or stop) together. Validation and test are scored by rank 0 alone on
everything while the other ranks wait; rank 0's decision (go on or stop early) is broadcast, so
every rank runs the same epochs. Only rank 0 writes the detector directory (``state.json``
records ``world_size``; the resume checkpoint holds every rank's random states) and shows
progress; every rank returns rank 0's report.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepfake_cli import __version__
from deepfake_cli.checkpoint import atomic_path, cpu_copy, read_json, write_json_atomic, write_text_atomic
from deepfake_cli.detect import resume, synthetic
from deepfake_cli.detect.config import DetectConfig, threshold_rule, validate
from deepfake_cli.detect.data import FaceSamples, loader, to_device
from deepfake_cli.detect.detector import build_model, describe, save_detector, write_state
from deepfake_cli.detect.layouts import FAKE, REAL, LabelledInput
from deepfake_cli.detect.metrics import fpr_provenance, fpr_threshold, summarize_folds
from deepfake_cli.detect.models import DetectorNet, apply_weights, architecture, initial_weights
from deepfake_cli.detect.plots import plot_history, plot_roc
from deepfake_cli.detect.preprocess import FrameStore
from deepfake_cli.detect.report import csv_text
from deepfake_cli.detect.scoring import (
    Scores, eer_threshold, evaluation_windows, level_metrics, per_fake_kind, preload, roc_inputs, score_windows,
)
from deepfake_cli.detect.sequences import SequenceRef
from deepfake_cli.detect.splits import Partition, kfold_splits, plan_split
from deepfake_cli.detect.tracks import CACHE_DIR, FaceSource, FaceTrack
from deepfake_cli.errors import InputError, TrainingError
from deepfake_cli.runtime import (
    all_reduce_sum,
    autocast,
    autocast_dtype,
    barrier,
    broadcast_object,
    data_parallel,
    distributed_group,
    gather_objects,
    rank,
    rank_device,
    same_on_every_rank,
    seed_everything,
    world_size,
)

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
INPUTS_FILE = "inputs.json"  # the inputs of each part (train, val, test; folds), for dfk calibrate
MAX_BAD_STEPS = 3


@dataclass
class FitResult:
    """The outcome of training one model on one partition."""

    folder: Path
    partition: Partition
    best_epoch: int
    epochs_run: int
    score: tuple[float, float]
    data: dict[str, Any]
    history: list[dict[str, Any]]
    best_state: dict[str, torch.Tensor]
    seed: int
    threshold: float = 0.5
    threshold_from: str = "config"
    threshold_rule: str = "eer"  # train.threshold as parsed: eer | fpr:P | a probability
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] | None = None
    val_scores: Scores | None = None
    test_scores: Scores | None = None
    seconds: float = 0.0
    fakes: dict[str, Any] | None = None  # which fakes each part used, with train.synthetic
    world_size: int = 1  # training processes (torchrun ranks)

    def state(self, config: DetectConfig, status: str) -> dict[str, Any]:
        """The bookkeeping saved as ``state.json`` beside the weights."""
        return {
            "model": config.model.name, "epoch": self.best_epoch, "epochs_run": self.epochs_run,
            "monitor": config.train.monitor,
            "val_auc": self.score[0] if self.score[0] >= 0 else None, "val_loss": self.score[1],
            "threshold": self.threshold, "threshold_from": self.threshold_from,
            "threshold_rule": self.threshold_rule, "seed": self.seed,
            "status": status, "seconds": round(self.seconds, 2), "synthetic": config.train.synthetic,
            "world_size": self.world_size,
        }

    def report(self) -> dict[str, Any]:
        """This fit's part of ``metrics.json``: blocks named after the part they were computed on."""
        report = {
            "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, "seconds": round(self.seconds, 2),
            "protocol": self.partition.describe(),
            "threshold": self.threshold, "threshold_from": self.threshold_from,
            "threshold_rule": self.threshold_rule, "data": self.data, "val": self.val,
        }
        if self.fakes is not None:
            report["fakes"] = self.fakes
        if self.test is not None:
            report["test"] = self.test
        return report


def _counts(tracks: list[FaceTrack], indices: list[int], refs: list[SequenceRef]) -> dict[str, Any]:
    videos = Counter(tracks[i].label for i in indices)
    sequences = Counter(tracks[r.track].label for r in refs)
    return {"videos": {"real": videos[REAL], "fake": videos[FAKE]},
            "sequences": {"real": sequences[REAL], "fake": sequences[FAKE]}}


def _score(levels: dict[str, Any], monitor: str) -> tuple[float, float]:
    """The monitored AUC (-1 when undefined) and the validation sequence log loss."""
    level = monitor.removesuffix("_auc")
    value = levels[level]["auc"]
    return (value if value is not None else -1.0, levels["sequence"]["log_loss"])


class _Keeper:
    """Decides which epoch to keep: the highest validation AUC, where AUCs within ``min_delta``
    of the best seen so far count as equal and then the lower validation log loss wins.

    The tolerance matters on small validation sets, where one swapped pair moves the AUC by a
    few hundredths and an untrained model can already rank perfectly.
    """

    def __init__(self, min_delta: float) -> None:
        self.min_delta = min_delta
        self.peak = -math.inf
        self.kept: tuple[float, float] | None = None

    def improves(self, score: tuple[float, float]) -> bool:
        """Whether ``(auc, loss)`` beats the kept epoch (and becomes the kept one)."""
        auc, loss = score
        self.peak = max(self.peak, auc)
        better = (self.kept is None or auc > self.kept[0] + self.min_delta
                  or (auc >= self.peak - self.min_delta and loss < self.kept[1]))
        if better:
            self.kept = score
        return better


class _NonFinite(Exception):
    """Non-finite losses in the epoch (their count); ``fit`` rolls back to the last epoch."""


class _Epochs:
    """The optimisation loop of one fit: a shuffled DataLoader, augmentation and normalisation on
    the device, and a non-finite guard that syncs with the host only every ``train.log_every``
    steps and at the end of the epoch.

    Under torchrun (``ranks > 1``) the forward goes through a ``DistributedDataParallel`` wrapper
    (backward averages the gradients over the ranks), each rank loads its share of every epoch,
    flips from its own stream (seed + rank), and the non-finite count and the epoch's loss are
    summed over the ranks: every rank sees the same numbers and raises together."""

    def __init__(self, model: DetectorNet, config: DetectConfig, device: torch.device, seed: int,
                 rank: int = 0, ranks: int = 1) -> None:
        self.model = model
        self.rank, self.ranks = rank, ranks
        self.step_model: torch.nn.Module = model
        if ranks > 1:
            self.step_model = data_parallel(model, device)
        self.config = config
        self.device = device
        self.dtype = autocast_dtype(device, config.train.precision)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr,
                                           weight_decay=config.train.weight_decay, fused=device.type == "cuda")
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)  # fp16 only
        self.flips = torch.Generator(device=device).manual_seed(seed + rank)
        self.seed = seed
        self.batches: DataLoader | None = None
        self.bad_steps = 0

    def _check(self, bad: torch.Tensor) -> None:
        """Raise ``_NonFinite`` once non-finite losses have corrupted training (a host sync; an
        all-reduce over the ranks, so every rank raises at the same step)."""
        self.bad_steps += int(all_reduce_sum(bad).item())
        bad.zero_()
        # Without a GradScaler a non-finite loss already poisoned the weights; with one (fp16) the
        # scaler skipped those steps, so a few are tolerated.
        limit = MAX_BAD_STEPS if self.scaler.is_enabled() else 0
        if self.bad_steps > limit:
            raise _NonFinite(self.bad_steps)

    def prepare(self, samples: FaceSamples) -> None:
        """Build the training DataLoader once (its workers persist across epochs)."""
        if self.batches is None:
            self.batches = loader(samples, self.config.train.batch_size, self.device, self.config.train.workers,
                                  shuffle=True, seed=self.seed, rank=self.rank, ranks=self.ranks)

    def _sampler(self) -> Any:
        assert self.batches is not None
        return self.batches.sampler  # EpochSampler(ShardSampler(RandomSampler))

    def rng_state(self) -> dict[str, Any]:
        """This rank's random states: global ones, the flips, the shuffle order, the loader's seed
        and the epoch counter of its sampler."""
        assert self.batches is not None and self.batches.generator is not None
        sampler = self._sampler()
        return resume.global_rng_state(self.device) | {
            "flips": self.flips.get_state().cpu(), "order": sampler.inner.inner.generator.get_state(),
            "loader": self.batches.generator.get_state(), "sampler_epoch": int(sampler.epoch)}

    def set_rng_state(self, state: dict[str, Any], own: bool = True) -> None:
        """Restore ``rng_state``'s result; ``own`` False (another rank's, on a run resumed with
        more ranks) takes only the shared parts and re-seeds this rank's own streams."""
        assert self.batches is not None and self.batches.generator is not None
        sampler = self._sampler()
        resume.set_global_rng_state(state, self.device)
        sampler.inner.inner.generator.set_state(state["order"])
        self.batches.generator.set_state(state["loader"])
        sampler.epoch = int(state["sampler_epoch"])
        if own:
            self.flips.set_state(state["flips"])
        else:
            self.flips.manual_seed(self.seed + self.rank + 7919 * sampler.epoch)
            torch.manual_seed(self.seed + self.rank + 7919 * sampler.epoch)

    def snapshot(self) -> dict[str, Any]:
        """A CPU copy of weights, optimiser, grad scaler and this rank's random states."""
        return {"model": cpu_copy(self.model.state_dict()),
                "optimizer": cpu_copy(self.optimizer.state_dict()),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": self.rng_state()}

    def restore(self, snapshot: dict[str, Any], rng: dict[str, Any], own: bool = True) -> None:
        """Back to ``snapshot`` (weights, optimiser, grad scaler) with random states ``rng``."""
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.scaler.is_enabled())
        if self.scaler.is_enabled() and snapshot.get("scaler"):
            self.scaler.load_state_dict(snapshot["scaler"])
        self.set_rng_state(rng, own)
        self.bad_steps = 0

    def set_lr_scale(self, scale: float) -> None:
        """The learning rate becomes ``train.lr`` times ``scale`` (lowered after a rollback)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.train.lr * scale

    def run(self, samples: FaceSamples, progress: bool) -> float:
        """One epoch over ``samples`` in a fresh seeded order; returns the mean training loss.
        Raises ``_NonFinite`` (on every rank at the same step) when the loss was not finite."""
        self.prepare(samples)
        self.model.train()
        total = torch.zeros((), device=self.device)
        count = 0
        bad = torch.zeros((), dtype=torch.int64, device=self.device)
        every = self.config.train.log_every
        bar = tqdm(self.batches, desc="batches", leave=False, disable=not progress, dynamic_ncols=True)
        for step, batch in enumerate(bar, start=1):
            x, y = to_device(batch, self.device)
            if self.config.train.flip:
                mirror = torch.rand(x.shape[0], device=self.device, generator=self.flips) < 0.5
                x = torch.where(mirror.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            with autocast(self.device, self.dtype):
                logits = self.step_model(self.model.normalise(x))
            loss = self.loss(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            value = loss.detach()
            bad += (~torch.isfinite(value)).long()
            total += torch.nan_to_num(value, nan=0.0, posinf=0.0) * x.shape[0]
            count += x.shape[0]
            if step % every == 0:
                self._check(bad)
                bar.set_postfix(loss=f"{float(total) / count:.3f}")
        self._check(bad)
        if self.ranks > 1:  # the mean over every rank's samples (one all-reduce at the end of the epoch)
            summed, seen = all_reduce_sum(torch.stack([total, total.new_tensor(float(count))])).tolist()
            return summed / seen if seen else math.nan
        return float(total) / count if count else math.nan


def fit(
    tracks: list[FaceTrack],
    partition: Partition,
    store: FrameStore,
    config: DetectConfig,
    folder: Path,
    device: torch.device,
    seed: int,
    progress: bool = True,
    desc: str = "train",
    start: dict[str, torch.Tensor] | None = None,
) -> FitResult | None:
    """Train one model on ``partition``, keeping the best epoch by validation score in ``folder`` and
    stopping after ``train.patience`` epochs without improvement; then choose the threshold on
    validation and score the test part (if any) with the kept weights. ``start`` is the state dict
    ``model.weights`` named (``initial_weights``), if any.

    Under torchrun every rank trains; rank 0 alone validates, decides, writes ``folder``, scores
    the test part and returns the result; the other ranks return None."""
    started = time.perf_counter()
    writer, ranks = rank() == 0, world_size()
    progress = progress and writer
    seq, train = config.sequence, config.train
    window = (seq.frames, seq.stride, config.eval.frames_per_video)
    frame_level = architecture(config.model.name).kind == "frame"
    sample = (1, 1) if frame_level else (seq.frames, seq.stride)
    fakes = None
    if any(t.synthetic for t in tracks):  # twins leave val/test parts that hold given fakes
        partition, fakes = synthetic.settle(tracks, partition)
    train_refs = synthetic.training_refs(tracks, partition.train, *sample, seq.train_per_video,
                                         train.synthetic_ratio)
    val_refs = evaluation_windows(tracks, partition.val, *window)
    test_refs = evaluation_windows(tracks, partition.test, *window)
    if not train_refs or not val_refs:
        raise InputError("the split left no training or no validation videos")
    data = {"train": _counts(tracks, partition.train, train_refs), "val": _counts(tracks, partition.val, val_refs)}
    if test_refs:
        data["test"] = _counts(tracks, partition.test, test_refs)
    if fakes is not None:
        data["train"]["sbi_sequences"] = sum(bool(tracks[r.track].synthetic) for r in train_refs)
    preload(store, tracks, train_refs + val_refs if writer else train_refs, progress)
    seed_everything(seed)  # the same initial weights on every rank
    model = apply_weights(build_model(config), start, config.model.weights).to(device)
    epochs = _Epochs(model, config, device, seed, rank(), ranks)
    batch = 2 * train.batch_size
    train_samples = FaceSamples(store, tracks, train_refs, frame_level, seed, augment=train.augment == "quality")
    epochs.prepare(train_samples)
    progress_state: dict[str, Any] = {"history": [], "keeper": {"peak": None, "kept": None}, "best_epoch": None,
                                      "best_score": None, "finished": False, "lr_scale": 1.0, "rollbacks": 0,
                                      "seconds": 0.0, "world_size": ranks}
    best_weights: dict[str, torch.Tensor] | None = None
    best_scores: Scores | None = None
    done = 0  # the last complete epoch
    saved = _resume_fit(folder, epochs, desc)
    if saved is not None:
        training, progress_state = saved
        done = int(progress_state["epoch"])
        best_weights = training.get("best")
        if training.get("best_probs") is not None:
            best_scores = _scores(model, tracks, val_refs, training)
    history: list[dict[str, Any]] = progress_state["history"]
    keeper = _Keeper(train.min_delta)
    keeper.peak = -math.inf if progress_state["keeper"]["peak"] is None else progress_state["keeper"]["peak"]
    keeper.kept = None if progress_state["keeper"]["kept"] is None else tuple(progress_state["keeper"]["kept"])
    best: FitResult | None = None
    if writer and progress_state["best_epoch"] is not None:
        assert best_weights is not None
        best = FitResult(folder, partition, progress_state["best_epoch"], done, tuple(progress_state["best_score"]),
                         data, history, best_weights, seed, val_scores=best_scores, fakes=fakes, world_size=ranks)
    lr_scale, rollbacks = float(progress_state["lr_scale"]), int(progress_state["rollbacks"])
    seconds_before = float(progress_state["seconds"])
    good = epochs.snapshot()  # what a non-finite loss rolls back to
    epoch = done + 1
    bar = tqdm(total=train.epochs, initial=done, desc=desc, unit="epoch", disable=not progress, dynamic_ncols=True)
    while epoch <= train.epochs and not progress_state["finished"]:
        tick = time.perf_counter()
        try:
            train_loss = epochs.run(train_samples, progress)
        except _NonFinite as exc:  # every rank gets here at the same step (the count is all-reduced)
            rollbacks += 1
            if rollbacks > train.max_rollbacks:
                raise TrainingError(f"loss was not finite ({exc.args[0]} steps in epoch {epoch}) after "
                                    f"{train.max_rollbacks} rollbacks with a lower learning rate; lower train.lr "
                                    "or use train.precision fp32") from None
            lr_scale *= train.nan_lr_factor
            epochs.restore(good, good["rng"])
            epochs.set_lr_scale(lr_scale)
            log.warning("%s: loss was not finite in epoch %d: rolled back to epoch %d, learning rate x%.3g "
                        "(rollback %d of %d)", desc, epoch, done, lr_scale, rollbacks, train.max_rollbacks)
            continue
        stop = False
        if writer:  # rank 0 validates on everything; the other ranks wait for its decision
            scores = score_windows(model, store, tracks, val_refs, device, epochs.dtype, batch, train.workers)
            levels = level_metrics(tracks, scores, 0.5)  # only threshold-free numbers are used here
            history.append({
                "epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": levels["sequence"]["log_loss"],
                "val_sequence_auc": levels["sequence"]["auc"], "val_video_auc": levels["video"]["auc"],
                "val_video_eer": levels["video"]["eer"], "seconds": round(time.perf_counter() - tick, 3),
            })
            write_text_atomic(folder / "log.csv", csv_text(history))
            score = _score(levels, train.monitor)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_auc=levels["sequence"]["auc"])
            if keeper.improves(score):
                weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                best = FitResult(folder, partition, epoch, epoch, score, data, history, weights, seed,
                                 val_scores=scores, fakes=fakes, world_size=ranks)
                save_detector(folder, model, config, best.state(config, "training"))
            elif best is not None and epoch - best.best_epoch >= train.patience:
                log.info("%s: no validation improvement for %d epochs; stopping at epoch %d", desc, train.patience,
                         epoch)
                stop = True
        stop = broadcast_object(stop)  # every rank stops after the same epoch
        good = epochs.snapshot()
        rngs = gather_objects(good["rng"])  # every rank's random states, for rank 0 to save
        if writer:
            assert best is not None
            progress_state |= {"history": history, "keeper": {"peak": keeper.peak if math.isfinite(keeper.peak)
                                                              else None, "kept": keeper.kept},
                               "best_epoch": best.best_epoch, "best_score": list(best.score),
                               "finished": stop or epoch == train.epochs, "lr_scale": lr_scale,
                               "rollbacks": rollbacks, "world_size": ranks,
                               "seconds": round(seconds_before + time.perf_counter() - started, 3)}
            resume.save_resume(folder, epoch, _training_record(good, rngs, best), progress_state)
        done = epoch
        epoch += 1
        bar.update(1)
        if stop:
            break
    bar.close()
    if not writer:
        return None
    assert best is not None and best.val_scores is not None
    best.epochs_run = len(history)
    _choose_threshold(best, tracks, config)
    best.val = level_metrics(tracks, best.val_scores, best.threshold)
    if test_refs:  # scored once, with the kept weights and the validation threshold; it picks nothing
        model.load_state_dict(best.best_state)
        preload(store, tracks, test_refs, progress)
        best.test_scores = score_windows(model, store, tracks, test_refs, device, epochs.dtype, batch, train.workers)
        best.test = level_metrics(tracks, best.test_scores, best.threshold)
        best.test.update(per_fake_kind(tracks, best.test_scores, best.threshold))
    best.seconds = seconds_before + time.perf_counter() - started
    _finish(best, tracks, config)
    return best


def _training_record(snapshot: dict[str, Any], rngs: list[dict[str, Any]], best: FitResult) -> dict[str, Any]:
    """``training.pt`` of the resume checkpoint: weights, optimiser, grad scaler, every rank's
    random states, and the best epoch's weights and validation scores."""
    assert best.val_scores is not None
    scores = best.val_scores
    return {"model": snapshot["model"], "optimizer": snapshot["optimizer"], "scaler": snapshot["scaler"],
            "rng": rngs, "best": best.best_state, "best_probs": torch.from_numpy(np.asarray(scores.window_probs)),
            "best_frame_probs": None if scores.frame_probs is None else torch.from_numpy(np.asarray(scores.frame_probs))}


def _scores(model: DetectorNet, tracks: list[FaceTrack], val_refs: list[SequenceRef],
            training: dict[str, Any]) -> Scores:
    """The best epoch's validation scores as saved (the windows and faces are ``score_windows``')."""
    probs = training["best_probs"].numpy()
    if training.get("best_frame_probs") is None:
        return Scores(val_refs, probs)
    keys = list(dict.fromkeys((ref.track, p) for ref in val_refs for p in ref.positions))
    return Scores(val_refs, probs, keys, training["best_frame_probs"].numpy())


def _resume_fit(folder: Path, epochs: _Epochs, desc: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Load ``folder``'s resume checkpoint into ``epochs`` on every rank, once every rank has shown
    that it reads the same one; returns (``training.pt``, ``progress.json``) or None to start afresh."""
    view = resume.resume_view(folder)
    saved = resume.load_resume(folder) if view is not None else None
    same_on_every_rank(None if saved is None else (view, saved[1]["epoch"]), "the resume checkpoint", folder)
    if saved is None:
        return None
    training, progress_state = saved
    rngs = training["rng"]
    own = epochs.rank < len(rngs)
    epochs.restore(training, rngs[epochs.rank] if own else rngs[0], own)
    epochs.set_lr_scale(float(progress_state["lr_scale"]))
    if int(progress_state.get("world_size", 1)) != epochs.ranks:
        log.warning("%s: resuming a run of %s rank(s) on %d: the global batch changes, so the numbers will differ "
                    "from an uninterrupted run", desc, progress_state.get("world_size"), epochs.ranks)
    log.info("%s: resuming after epoch %d (%s)", desc, progress_state["epoch"], folder / resume.RESUME_DIR)
    return training, progress_state


def _choose_threshold(result: FitResult, tracks: list[FaceTrack], config: DetectConfig) -> None:
    """The decision threshold by ``train.threshold`` (``config.threshold_rule``), on the validation
    videos at the kept epoch: the configured probability (``config``), the EER point (``val EER``)
    or the false-positive rule on the validation real videos (``metrics.fpr_threshold``; the
    validation fakes only place it within its gap). Without the videos a rule needs (no real ones,
    for either) it falls back to 0.5 with a warning and says so in ``threshold_from``."""
    rule = threshold_rule(config.train.threshold)
    result.threshold_rule = rule.describe()
    if rule.kind == "fixed":
        assert rule.value is not None
        result.threshold, result.threshold_from = rule.value, "config"
        return
    assert result.val_scores is not None
    if rule.kind == "eer":
        found = eer_threshold(tracks, result.val_scores)
        if found is None:
            log.warning("validation lacks a class; threshold 0.5 instead of its EER point")
            result.threshold, result.threshold_from = 0.5, "default (validation lacks a class)"
        else:
            result.threshold, result.threshold_from = found, "val EER"
        return
    assert rule.value is not None
    videos = result.val_scores.videos()
    reals = [p for t, p in videos.items() if tracks[t].label == REAL]
    if not reals:
        log.warning("validation has no real video; threshold 0.5 instead of fpr<=%g", rule.value)
        result.threshold = 0.5
        result.threshold_from = f"default (validation has no real video for fpr<={rule.value:g})"
        return
    chosen = fpr_threshold(reals, rule.value, [p for t, p in videos.items() if tracks[t].label != REAL])
    result.threshold = chosen.threshold
    result.threshold_from = fpr_provenance("val", chosen)


def _finish(result: FitResult, tracks: list[FaceTrack], config: DetectConfig) -> None:
    """Final state.json, metrics.json and plots of one fit."""
    write_state(result.folder, result.state(config, "done"))
    write_json_atomic(result.folder / METRICS_FILE, result.report())
    assert result.val_scores is not None
    curves = roc_inputs(tracks, result.val_scores, "val ")
    if result.test_scores is not None:
        curves |= roc_inputs(tracks, result.test_scores, "test ")
    plot_roc(result.folder / "roc.png", curves, title="ROC (val, test)" if result.test_scores else "validation ROC")
    plot_history(result.folder / "training.png", result.history, result.best_epoch)


def train_detector(
    items: list[LabelledInput],
    outdir: str | Path,
    config: DetectConfig,
    *,
    device: str = "auto",
    seed: int = 0,
    folds: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a detector on labelled videos, images or extract folders; returns ``metrics.json``'s content.

    Under torchrun every rank makes this call: it joins the process group (and leaves it after)
    unless the caller already did; only rank 0 writes ``outdir``; every rank returns rank 0's report.
    """
    validate(config)
    if folds < 1:
        raise InputError(f"--folds must be at least 1, got {folds}")
    folder = Path(outdir)
    torch_device = rank_device(device)  # under torchrun: cuda:LOCAL_RANK, or the CPU
    record = resume.run_record(items, config, seed, folds)
    with distributed_group(torch_device, config.train.dist_timeout):
        writer = rank() == 0
        # Rank 0 decides whether this is a new run, a resume or a finished run; a refusal reaches
        # every rank, so none is left waiting in a collective.
        outcome: tuple[str, str] | str
        try:
            outcome = resume.claim(folder, record) if writer else ("", "")
        except InputError as exc:
            outcome = str(exc)
        outcome = broadcast_object(outcome)
        if isinstance(outcome, str):
            raise InputError(outcome)
        status, token = outcome
        # every rank reads the run.json rank 0 just stamped, before any work: a rank that does not
        # share rank 0's filesystem stops here, with every other rank
        same_on_every_rank(token if writer else resume.session_seen(folder), resume.RUN_FILE, folder)
        if status == "done":
            report = read_json(folder / METRICS_FILE) if writer else {}
            report = broadcast_object(report)
            log.info("%s: this run is finished (%s says done); nothing to train. Give another output folder "
                        "to train again", folder, resume.RUN_FILE)
            return report | {"already_done": True}
        if status == "training" and writer:
            log.warning("%s: resuming the unfinished run in this folder", folder)
        start, source, tracks, skipped = _faces(items, folder, config, torch_device, progress and writer)
        report = _train(items, folder, config, torch_device, seed, folds, progress and writer, start, source, tracks,
                        skipped)
        if writer:
            resume.mark_done(folder)
        report = broadcast_object(report)  # rank 0's, on every rank
    return report


def _faces(items: list[LabelledInput], folder: Path, config: DetectConfig, torch_device: torch.device,
           progress: bool) -> tuple[dict[str, torch.Tensor] | None, FaceSource, list[FaceTrack], list[dict[str, str]]]:
    """The initial weights (``model.weights``), the face source and the labelled inputs' tracks.

    Under torchrun rank 0 first fetches the initial weights (a download), then every rank extracts
    and caches the faces of its own share of the inputs (every ``world_size``-th); after a barrier
    every rank reads all of them from the cache. The counts of extracted and reused faces are
    summed over the ranks."""
    writer, ranks = rank() == 0, world_size()
    if writer:
        start = initial_weights(config)  # before any face extraction: a missing weights file fails fast
    barrier()
    if not writer:
        start = initial_weights(config)
    folder.mkdir(parents=True, exist_ok=True)
    source = FaceSource(folder / CACHE_DIR, config.faces, torch_device.type)
    if ranks > 1:
        source.labelled(items[rank()::ranks], progress)
        counts = all_reduce_sum(torch.tensor([source.extracted, source.reused], dtype=torch.float64,
                                             device=torch_device)).tolist()
        barrier()
        source.extracted, source.reused = 0, 0
        tracks, skipped = source.labelled(items, False)
        source.extracted, source.reused = int(counts[0]), int(counts[1])
        return start, source, tracks, skipped
    tracks, skipped = source.labelled(items, progress)
    return start, source, tracks, skipped


def _train(items: list[LabelledInput], folder: Path, config: DetectConfig, torch_device: torch.device, seed: int,
           folds: int, progress: bool, start: dict[str, torch.Tensor] | None, source: FaceSource,
           tracks: list[FaceTrack], skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Every rank trains; rank 0 alone writes ``folder`` and has the full report."""
    writer = rank() == 0
    without: list[str] = []
    if config.train.synthetic == synthetic.SBI:
        tracks, without = synthetic.add_twins(tracks)
    labels = {t.label for t in tracks}
    if labels != {REAL, FAKE}:
        missing = "real" if REAL not in labels else "fake"
        hint = "" if config.train.synthetic == "none" else " (no real face with 68 landmarks to self-blend)"
        raise InputError(f"after face extraction no {missing} video has a face{hint}; training needs both "
                         "real and fake examples (give --fake, or --synthetic sbi to make fakes from the real faces)")
    store = FrameStore(config.sequence.size, config.sequence.input, config.sequence.canny_sigma,
                       cache=config.train.cache_frames)
    partition = plan_split(tracks, config.train.val_fraction, config.train.test_fraction, seed)
    with torch.device("meta"):  # shapes only: counts the parameters without allocating or initialising
        shape = build_model(config)
    report: dict[str, Any] = {
        "tool": f"dfk {__version__}",
        "inputs": {"given": len(items), "videos": {"real": sum(t.label == REAL for t in tracks),
                                                   "fake": sum(t.label == FAKE and not t.synthetic for t in tracks)},
                   "skipped": skipped, "faces_extracted": source.extracted, "faces_reused": source.reused},
        "model": describe(shape, config),
        "monitor": config.train.monitor,
        "eval_frames_per_video": config.eval.frames_per_video,
    }
    if config.train.synthetic == synthetic.SBI:
        report["synthetic"] = synthetic.describe(tracks, without, config.train.synthetic_ratio)
    if writer:  # which inputs each part used, so dfk calibrate can refuse them
        parts = ({"train": partition.train, "val": partition.val} if folds == 1
                 else {"folds": sorted(partition.train + partition.val)})
        write_json_atomic(folder / INPUTS_FILE, _inputs_record(tracks, parts | {"test": partition.test}))
        report["inputs"]["listed_in"] = INPUTS_FILE
    if folds == 1:
        result = fit(tracks, partition, store, config, folder, torch_device, seed, progress, start=start)
        if result is not None:
            report |= result.report()
    else:
        pool = sorted(partition.train + partition.val)  # the test part stays out of every fold
        results = []
        for k, (train_idx, val_idx) in enumerate(kfold_splits(tracks, folds, seed, among=pool), start=1):
            fold = Partition(train_idx, val_idx, partition.test, f"fold {k}/{folds}", partition.test_from)
            results.append(fit(tracks, fold, store, config, folder / f"fold{k}", torch_device, seed + k, progress,
                               f"fold {k}/{folds}", start))
        if not writer:
            return report
        results = [r for r in results if r is not None]
        kept = max(range(folds), key=lambda k: (results[k].score[0], -results[k].score[1]))  # by validation
        reason = _kept_because(results, kept, config.train.monitor)
        chosen_by = f"fold {kept + 1}: {results[kept].threshold_from}"
        _keep_fold(folder, results[kept], config, {"kept_fold_reason": reason, "threshold_from": chosen_by})
        report["protocol"] = {"val": f"each fold's held-out groups ({folds} folds)", "test": partition.test_from}
        report["folds"] = [{"fold": k + 1} | r.report() for k, r in enumerate(results)]
        report["cross_validation"] = {"val": _fold_summary([r.val for r in results])}
        if partition.test:
            report["cross_validation"]["test"] = _fold_summary([r.test or {} for r in results])
        report["kept_fold"] = kept + 1
        report["kept_fold_reason"] = reason
        report["threshold"] = results[kept].threshold
        report["threshold_from"] = chosen_by
        report["threshold_rule"] = results[kept].threshold_rule
    if writer:
        write_json_atomic(folder / METRICS_FILE, report)
    return report


def _fold_summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over folds per level and metric."""
    levels = [level for level in ("frame", "sequence", "video") if all(level in b for b in blocks)]
    return {level: summarize_folds([b[level] for b in blocks]) for level in levels}


def _kept_because(results: list[FitResult], kept: int, monitor: str) -> str:
    """Why fold ``kept`` (0-based) is the one ``dfk detect`` uses, and what its figures are worth."""
    auc = results[kept].score[0]
    value = f"{auc:.4g}" if auc >= 0 else "undefined"
    return (f"fold {kept + 1} has the highest validation {monitor} of the {len(results)} folds ({value}; ties go "
            "to the lower validation loss). That is the fold's own validation score, which also chose its epoch "
            "and threshold, so its val figures are optimistic; quote cross_validation's mean ± std instead")


def _inputs_record(tracks: list[FaceTrack], parts: dict[str, list[int]]) -> dict[str, Any]:
    """``inputs.json``: the absolute path of every input (video, image or extract folder) each part
    used, self-blended twins left out (they are their real video). ``dfk calibrate`` refuses them."""
    def inputs(indices: list[int]) -> list[str]:
        # a video's or image's track is keyed by its path, an extract folder's by "<folder>::<source>"
        return sorted({str(Path(tracks[i].key.split("::", 1)[0]).resolve()) for i in indices
                       if not tracks[i].synthetic})

    return {"parts": {name: inputs(indices) for name, indices in parts.items() if indices},
            "note": "inputs by the part of this training run that used them (folds: the train and validation "
                    "parts of every fold); a copy of one under another path is not recognised"}


def _keep_fold(folder: Path, result: FitResult, config: DetectConfig, extra: dict[str, Any]) -> None:
    """Copy the kept fold's model, state (with ``extra``), log and plots to the detector directory's
    top level."""
    model = build_model(config)
    model.load_state_dict(result.best_state)
    save_detector(folder, model, config, result.state(config, "done") | {"fold": result.folder.name} | extra)
    for name in ("roc.png", "training.png", "log.csv"):
        if (result.folder / name).is_file():
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes((result.folder / name).read_bytes())
