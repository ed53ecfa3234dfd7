"""``train_facegan``: the training run of ``dfk train-facegan`` as a Python function.

Starts a model folder or resumes it (``train.iterations`` is the total step to reach; a folder already
there is not retrained; other settings are refused), then loops: one ``FaceGan.step`` per
iteration, a ``log.csv`` row every ``train.log_every`` steps, a 6x6 mosaic of fixed-noise samples
every ``train.mosaic_every`` steps (``previews/step_<N>.png``), a checkpoint set every
``train.save_every`` steps and at the end, the loss plot with each checkpoint.

Under torchrun every rank makes this call; only rank 0 writes the folder.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from deepfake_cli import __version__
from deepfake_cli.errors import TrainingError
from deepfake_cli.monitor import LOG_FILE, PLOT_FILE, TrainingLog, write_preview
from deepfake_cli.runtime import barrier, distributed_group, rank, rank_device, world_size
from deepfake_cli.synth import store
from deepfake_cli.synth.data import load_faces
from deepfake_cli.synth.gan import LOSS_NAMES, FaceGan
from deepfake_cli.synth.schema import FaceGanConfig, validate
from deepfake_cli.training import LossInterval, loss_text, run_config
from deepfake_cli.training import TrainSummary as BaseSummary

log = logging.getLogger(__name__)

DEFAULT_PRESET = "cpu"
MOSAIC_SIDE = 6
MOSAIC_SEED = 20  # the mosaic's noise is the same for every model of one latent size: runs compare


@dataclass
class TrainSummary(BaseSummary):
    """The outcome of one ``train_facegan`` call."""

    def details(self) -> list[str]:
        return [loss_text(self.losses, 3, lambda name: name in ("d_loss", "g_loss"))]


def facegan_config(model_dir: str | Path, preset: str | None = None, config_file: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> FaceGanConfig:
    """The run's config: ``preset`` (default ``cpu``), ``config_file`` and ``overrides`` merged.

    Without a preset or file, a model folder that already has a ``config.yaml`` resumes with it.
    """
    return run_config(FaceGanConfig, "synth", DEFAULT_PRESET, validate, model_dir, preset, config_file, overrides)


def mosaic_noise(latent: int, device: torch.device) -> torch.Tensor:
    """The fixed noise of the 6x6 mosaic."""
    generator = torch.Generator().manual_seed(MOSAIC_SEED)
    return torch.randn(MOSAIC_SIDE * MOSAIC_SIDE, latent, generator=generator).to(device)


@torch.no_grad()
def write_mosaic(gan: FaceGan, noise: torch.Tensor, model_dir: Path, step: int) -> Path:
    """The sampler's faces of ``noise`` as a 6x6 grid, ``previews/step_<N>.png`` (and ``latest.png``)."""
    faces = (gan.sampler(noise) + 1.0) / 2.0
    return write_preview(model_dir, step, list(faces.split(MOSAIC_SIDE)))


def _means(interval: LossInterval, gan: FaceGan, over_time: bool) -> tuple[dict[str, float], bool]:
    """Each loss's mean over the interval and the ranks, and whether any rank is out of time, in one
    transfer; a NaN/inf (or a non-finite weight) raises ``TrainingError`` on every rank."""
    flags = [~gan.weights_finite(), torch.tensor(float(over_time), device=gan.device)]
    totals, (weights_bad, late) = interval.all_reduce(LOSS_NAMES, flags)
    if weights_bad > 0 or not all(math.isfinite(v) for v in (*totals.values(), weights_bad, late)):
        raise TrainingError("loss or weights became NaN/inf; the model folder keeps its last checkpoint; "
                            "try lower train.lr_g/train.lr_d")
    return {name: value / (interval.steps * world_size()) for name, value in totals.items()}, late > 0


def train_facegan(folders: Sequence[str | Path], model_dir: str | Path, config: FaceGanConfig,
                  device: str = "auto", seed: int = 0, progress: bool = False,
                  minutes: float | None = None) -> TrainSummary:
    """Train (or resume) a face GAN on the faces of ``folders`` until ``config.train.iterations``, or until
    ``minutes`` of training time have passed in this call (then it saves and returns).

    Raises ``ConfigError`` for an invalid config or a resume with other settings, ``InputError`` for
    missing or too few faces, ``CheckpointError`` for an unreadable checkpoint and ``TrainingError``
    when the losses become NaN/inf.
    """
    validate(config)
    folder = Path(model_dir)
    resuming = store.has_checkpoint(folder)
    if resuming:
        store.check_resumable(store.read_config(folder), config, folder)
    torch_device = rank_device(device)
    train = config.train
    with distributed_group(torch_device):
        writer = rank() == 0
        faces = load_faces(folders, config.model.size).to(torch_device)
        gan = FaceGan(config, faces, torch_device, seed, rank())
        checkpoint = store.load(folder) if resuming else None
        step = 0
        if checkpoint is not None:
            gan.load(checkpoint.model, checkpoint.training)
            step = checkpoint.step
        summary = TrainSummary(folder, step, step)
        if step >= train.iterations:
            return summary
        barrier()  # every rank has read the folder before rank 0 writes to it
        info = {"family": "synth", "kind": "gan", "faces": {"folders": [str(f) for f in folders], "count": len(faces)}, "seed": seed,
                "world_size": world_size(), "versions": {"dfk": __version__, "torch": torch.__version__}}
        seconds_before = float(checkpoint.info.get("seconds", 0.0)) if checkpoint is not None else 0.0
        training_log = None
        if writer:
            store.write_config(folder, config)
            training_log = TrainingLog(folder / LOG_FILE, LOSS_NAMES, resume_step=step)

        def save() -> None:
            if writer and training_log is not None:
                store.save(folder, step, gan.model_state(), gan.training_state(),
                           {**info, "seconds": round(seconds_before + summary.seconds, 1)}, train.keep_backups)
                if training_log.rows:
                    training_log.plot(folder / PLOT_FILE)

        noise = mosaic_noise(config.model.latent, torch_device)
        sums = LossInterval()
        time_limit = None if minutes is None else 60.0 * minutes  # checked with the losses (ranks agree)
        bar = tqdm(total=train.iterations, initial=step, unit="step", disable=not (progress and writer), dynamic_ncols=True)
        try:
            while step < train.iterations:
                started = time.perf_counter()
                losses = gan.step(step)
                elapsed = time.perf_counter() - started
                step += 1
                summary.seconds += elapsed
                sums.add(losses, elapsed)
                bar.update(1)
                stop = step == train.iterations
                log_now, mosaic_now = step % train.log_every == 0, step % train.mosaic_every == 0
                save_now = step % train.save_every == 0
                if not (log_now or mosaic_now or save_now or stop):
                    continue
                # nothing is logged, drawn or saved before the losses and weights are checked
                over_time = time_limit is not None and summary.seconds >= time_limit
                summary.losses, out_of_time = _means(sums, gan, over_time)
                stop = stop or out_of_time  # every rank agrees: the flag was summed over them
                if log_now or stop:
                    if training_log is not None:
                        speed = train.batch_size * world_size() * sums.steps / max(sums.seconds, 1e-9)
                        training_log.append({"step": step, "seconds": seconds_before + summary.seconds,
                                             "faces_per_s": speed, "lr": train.lr_g, **summary.losses})
                    bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in summary.losses.items()))
                    sums = LossInterval()
                if writer and (mosaic_now or stop):
                    write_mosaic(gan, noise, folder, step)
                if save_now or stop:
                    save()
                if stop:
                    break
        except KeyboardInterrupt:
            if writer and bool(gan.weights_finite()):
                save()
                log.warning("interrupted: saved step %d to %s", step, folder)
            raise
        finally:
            bar.close()
        barrier()  # rank 0's last checkpoint is on disk when any rank returns
    summary.step = step
    return summary
