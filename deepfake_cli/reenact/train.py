"""``train_reenact``: the training run of ``dfk train-reenact`` as a Python function.

Self-supervised: each step reconstructs frame t of a video from frame s of the same shot through
keypoints, dense motion and the generator (``ReenactNet``), with an L1 image pyramid, (MS-)DSSIM,
an optional gradient loss and the keypoints' equivariance under a random affine transform.

The model folder resumes: the same command on it continues from its last checkpoint set up to
``train.iterations``; a finished run trains nothing; a folder trained with other settings (any
key outside ``RESUMABLE_KEYS``, another seed or other videos) is refused in one line. Under
``torchrun`` each rank trains ``train.batch_size`` pairs (gradients averaged by DDP) and only
rank 0 writes the folder (checkpoints, config, log.csv, loss.png, previews, progress bar).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from deepfake_cli import __version__
from deepfake_cli.config import to_dict, tree_differences
from deepfake_cli.errors import InputError, TrainingError
from deepfake_cli.losses import dssim_loss, edge_loss
from deepfake_cli.monitor import LOG_FILE, PLOT_FILE, TrainingLog, write_preview
from deepfake_cli.reenact import store
from deepfake_cli.reenact.data import PairSet, load_pairs
from deepfake_cli.reenact.model import ReenactNet, warp
from deepfake_cli.reenact.schema import RESUMABLE_KEYS, AugmentConfig, LossConfig, ReenactConfig, validate
from deepfake_cli.runtime import (
    barrier,
    data_parallel,
    distributed_group,
    is_distributed,
    rank,
    rank_device,
    same_on_every_rank,
    world_size,
)
from deepfake_cli.training import LossInterval, TrainSummary, run_config

log = logging.getLogger(__name__)

DEFAULT_PRESET = "cpu"
CACHE_DIR = "cache"
LOSS_NAMES = ("l1", "ssim", "edge", "equivariance", "equivariance_jacobian")


def reenact_config(model_dir: str | Path, preset: str | None = None, config_file: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> ReenactConfig:
    """The run's config: ``preset`` (default ``cpu``), ``config_file`` and ``overrides`` merged.

    Without a preset or file, a model folder that already has a ``config.yaml`` resumes with it.
    """
    return run_config(ReenactConfig, "reenact", DEFAULT_PRESET, validate, model_dir, preset, config_file, overrides)


def pyramid_l1(prediction: torch.Tensor, target: torch.Tensor, scales: int) -> torch.Tensor:
    """Mean L1 over ``scales`` halvings of both images."""
    total = prediction.new_zeros(())
    for scale in range(scales):
        if scale:
            prediction, target = F.avg_pool2d(prediction, 2), F.avg_pool2d(target, 2)
        total = total + (prediction - target).abs().mean()
    return total / scales


def random_affine(count: int, sigma: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``[N,2,3]`` matrices near the identity (normalised coordinates), for the equivariance loss."""
    noise = torch.randn(count, 2, 3, generator=generator) * sigma
    return (torch.eye(2, 3).expand(count, 2, 3) + noise).to(device)


class TrainingNet(nn.Module):
    """``ReenactNet`` and every loss of one step in one ``forward``, so DDP sees the whole step."""

    def __init__(self, net: ReenactNet, loss: LossConfig) -> None:
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, source: torch.Tensor, driving: torch.Tensor, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(source, driving)
        prediction, loss = out["prediction"], self.loss
        losses = {"l1": pyramid_l1(prediction, driving, loss.pyramid)}
        if loss.ssim > 0:
            losses["ssim"] = dssim_loss(prediction, driving, scales=loss.ssim_scales)
        if loss.edge > 0:
            losses["edge"] = edge_loss(prediction, driving)
        if loss.equivariance > 0 or loss.equivariance_jacobian > 0:
            grid = F.affine_grid(theta, list(driving.shape), align_corners=False)
            moved = self.net.keypoints(F.grid_sample(driving, grid, padding_mode="reflection", align_corners=False))
            # The moved image at z shows the driving image at T(z) = A z + b: keypoints map back by T.
            linear, shift = theta[:, :, :2], theta[:, :, 2]
            mapped = torch.einsum("nij,nkj->nki", linear, moved["value"]) + shift[:, None]
            losses["equivariance"] = (out["kp_driving"] - mapped).abs().mean()
            composed = torch.linalg.inv(out["jacobian_driving"]) @ (linear[:, None] @ moved["jacobian"])
            losses["equivariance_jacobian"] = (torch.eye(2, device=theta.device) - composed).abs().mean()
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of ``losses``."""
        return sum((getattr(self.loss, name) * value for name, value in losses.items()), losses["l1"].new_zeros(()))


def augment(source: torch.Tensor, driving: torch.Tensor, settings: AugmentConfig,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip, brightness and contrast for both images of each pair (float, [0, 1])."""
    n = source.shape[0]
    flip = torch.rand(n, generator=generator) < settings.flip
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * settings.contrast
    offset = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * settings.brightness
    pair = []
    for images in (source, driving):
        images = torch.where(flip.view(n, 1, 1, 1).to(images.device), images.flip(-1), images)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        pair.append(((images - mean) * gain.to(images.device) + mean + offset.to(images.device)).clamp(0, 1))
    return pair[0], pair[1]


def run_record(config: ReenactConfig, sources: Sequence[str | Path], seed: int) -> dict[str, Any]:
    """What identifies a run: the config less ``RESUMABLE_KEYS``, the seed and the videos."""
    settings = to_dict(config)
    for dotted in RESUMABLE_KEYS:
        section, key = dotted.split(".")
        settings[section].pop(key, None)
    videos = [str(Path(s).resolve()) for s in sources]
    return {"config": settings, "seed": seed, "videos": videos,
            "videos_sha256": hashlib.sha256(json.dumps(videos).encode()).hexdigest()}


def record_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings of ``wanted`` that differ from ``saved`` (dotted keys, seed, videos)."""
    found = tree_differences(saved.get("config", {}), wanted["config"])
    if saved.get("seed") != wanted["seed"]:
        found.append(f"seed {saved.get('seed')!r} -> {wanted['seed']!r}")
    if saved.get("videos_sha256") != wanted["videos_sha256"]:
        found.append(f"videos ({len(saved.get('videos') or [])} -> {len(wanted['videos'])}, or other paths)")
    return found


def _to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float() / 255.0


class _Session:
    """One training session: the networks, optimiser, data and the folder's writer (rank 0)."""

    def __init__(self, config: ReenactConfig, pairs: PairSet, folder: Path, device: torch.device, seed: int,
                 info: dict[str, Any]) -> None:
        self.config, self.pairs, self.folder, self.device, self.seed = config, pairs, folder, device, seed
        torch.manual_seed(seed)
        self.net = store.build_net(config.model).to(device)
        self.training = TrainingNet(self.net, config.loss).to(device)
        self.step_module: nn.Module = self.training
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.train.lr,
                                          betas=(config.train.beta1, config.train.beta2))
        self.info, self.seconds_before, self.step = info, 0.0, 0
        self.writer = rank() == 0

    def restore(self, checkpoint: store.Checkpoint) -> None:
        self.net.load_state_dict(checkpoint.model["net"])
        if checkpoint.training is not None:
            self.optimizer.load_state_dict(checkpoint.training["optimizer"])
        self.step = checkpoint.step
        self.seconds_before = float(checkpoint.info.get("seconds", 0.0))

    def save(self, seconds: float) -> None:
        if self.writer:
            info = {**self.info, "seconds": round(self.seconds_before + seconds, 1),
                    "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
            store.save(self.folder, self.step, self.net.state_dict(), {"optimizer": self.optimizer.state_dict()},
                       info, self.config.train.keep_backups)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch drawn from the step number (a resumed run draws alike)."""
        self.net.train()
        rng = np.random.default_rng([self.seed, rank(), self.step])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        source, driving = self.pairs.sample(self.config.train.batch_size, rng)
        source, driving = augment(_to_float(source, self.device), _to_float(driving, self.device),
                                  self.config.augment, generator)
        theta = random_affine(source.shape[0], self.config.loss.affine_sigma, generator, self.device)
        losses = self.step_module(source, driving, theta)
        self.optimizer.zero_grad(set_to_none=True)
        self.training.total(losses).backward()
        self.optimizer.step()
        self.step += 1
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def preview(self) -> None:
        """``previews/step_<N>.png``: rows source | driving | generated | source warped by the flow | occlusion."""
        if not self.writer:
            return
        self.net.eval()
        source, driving = (_to_float(x, self.device) for x in self.pairs.spread(self.config.train.preview_pairs))
        out = self.net(source, driving)
        occlusion = F.interpolate(out["occlusion"], size=source.shape[-2:], mode="bilinear", align_corners=False)
        write_preview(self.folder, self.step, [source, driving, out["prediction"], warp(source, out["flow"]),
                                               occlusion.expand(-1, 3, -1, -1)])


def _load_everywhere(folder: Path) -> store.Checkpoint | None:
    """The folder's checkpoint read by every rank, which then compare the step they read."""
    checkpoint = store.load(folder) if store.has_checkpoint(folder) else None
    same_on_every_rank(None if checkpoint is None else checkpoint.step, "the checkpoint", folder)
    return checkpoint


def train_reenact(videos: Sequence[str | Path], model_dir: str | Path, config: ReenactConfig, device: str = "auto",
                  seed: int = 0, progress: bool = False, minutes: float | None = None,
                  cache_dir: str | Path | None = None) -> TrainSummary:
    """Train (or resume) a reenactment model on ``videos`` until ``config.train.iterations``, or until
    ``minutes`` of training time have passed in this call (then it saves and returns).

    Face crops are extracted once into ``cache_dir`` (default ``MODEL_DIR/cache``). Raises
    ``ConfigError`` for an invalid config, ``InputError`` for missing videos, videos without faces
    or a folder trained with other settings, ``CheckpointError`` for unsafe or corrupt checkpoints
    and ``TrainingError`` when a loss becomes NaN/inf.
    """
    validate(config)
    if not videos:
        raise InputError("give at least one video (or folder of frames) to train on")
    folder = Path(model_dir)
    record = run_record(config, videos, seed)
    existing = store.load(folder, training=False) if store.has_checkpoint(folder) else None
    if existing is not None:
        changed = record_differences(existing.info.get("run", {}), record)
        if changed:
            raise InputError(f"{folder} holds a reenactment model trained with other settings "
                             f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}); give another output "
                             "folder, or the same settings to resume it", str(folder))
        if existing.step >= config.train.iterations:
            return TrainSummary(folder, existing.step, existing.step)
    torch_device = rank_device(device)
    with distributed_group(torch_device) as distributed:
        cache = Path(cache_dir) if cache_dir is not None else folder / CACHE_DIR
        if rank() == 0:
            pairs = load_pairs(videos, cache, config.model.size, config.data, progress)
        barrier()  # rank 0 filled the cache; the others read it
        if rank() != 0:
            pairs = load_pairs(videos, cache, config.model.size, config.data)
        info = {"family": "reenact", "kind": "learned", "run": record, "frames": pairs.counts, "world_size": world_size(),
                "versions": {"dfk": __version__, "torch": torch.__version__}}
        session = _Session(config, pairs, folder, torch_device, seed, info)
        checkpoint = _load_everywhere(folder)
        if checkpoint is not None:
            session.restore(checkpoint)
        summary = TrainSummary(folder, session.step, session.step)
        if distributed:
            session.step_module = data_parallel(session.training, torch_device)
        barrier()
        if session.writer:
            store.write_config(folder, config)
            if checkpoint is None:
                session.save(0.0)
        _loop(session, summary, progress and session.writer, None if minutes is None else 60.0 * minutes)
        barrier()
    return summary


def _loop(session: _Session, summary: TrainSummary, progress: bool, time_limit: float | None) -> None:
    train = session.config.train
    log_file = (TrainingLog(session.folder / LOG_FILE, LOSS_NAMES, resume_step=session.step)
                if session.writer else None)
    interval, last_checked = LossInterval(), session.step
    bar = tqdm(total=train.iterations, initial=session.step, unit="step", disable=not progress, dynamic_ncols=True)
    out_of_time = False
    try:
        while session.step < train.iterations and not out_of_time:
            started = time.perf_counter()
            losses = session.train_step()
            elapsed = time.perf_counter() - started
            summary.seconds += elapsed
            interval.add(losses, elapsed)
            bar.update(1)
            over_time = time_limit is not None and summary.seconds >= time_limit
            out_of_time = over_time and not is_distributed()
            step, last = session.step, session.step == train.iterations
            if not (step % train.log_every == 0 or last or out_of_time):  # ranks agree at the next row
                continue
            totals, (late,) = interval.all_reduce(sorted(interval.sums),
                                                  [torch.tensor(float(over_time), device=session.device)])
            out_of_time = out_of_time or late > 0
            means = {n: v / (interval.steps * world_size()) for n, v in totals.items()}
            if not all(math.isfinite(v) for v in means.values()):
                raise TrainingError(f"loss became NaN/inf between steps {last_checked} and {step}; the model folder "
                                    "keeps its last checkpoint; try a lower train.lr")
            if log_file is not None:
                speed = interval.steps * train.batch_size * world_size() / max(interval.seconds, 1e-9)
                log_file.append({"step": step, "seconds": session.seconds_before + summary.seconds,
                                 "faces_per_s": speed, "lr": train.lr, **means})
            summary.losses, interval, last_checked = means, LossInterval(), step
            bar.set_postfix_str(" ".join(f"{k} {v:.4f}" for k, v in means.items()))
            if step % train.preview_every == 0 or last or out_of_time:
                session.preview()
            if step % train.save_every == 0 and not last and not out_of_time:
                session.save(summary.seconds)
                if log_file is not None:
                    log_file.plot(session.folder / PLOT_FILE)
        session.save(summary.seconds)
        if log_file is not None and log_file.rows:
            log_file.plot(session.folder / PLOT_FILE)
    except KeyboardInterrupt:
        bar.close()
        if session.writer and all(bool(torch.isfinite(p).all()) for p in session.net.parameters()):
            session.save(summary.seconds)
            log.warning("interrupted: saved step %d to %s", session.step, session.folder)
        raise
    finally:
        bar.close()
    summary.step = session.step
