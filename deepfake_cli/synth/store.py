"""The model folder of a face GAN: weights, optimiser state, config and bookkeeping.

``model.pt`` holds the weights (``{"step", "generator", "discriminator"[, "generator_ema"]}``),
``training.pt`` the optimisers' state, ``state.json`` the step and the run's record; the three are
saved as one checkpoint set (``deepfake_cli.checkpoint.save_set``), so a crash mid-save leaves the
previous step loadable. ``config.yaml`` is the resolved config the folder resumes with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfake_cli.checkpoint import (
    MANIFEST_FILE,
    Checkpoint,
    load_model,
    read_model_config,
    save_model,
    write_model_config,
)
from deepfake_cli.config import diff_keys, leaf_keys, to_dict
from deepfake_cli.errors import CheckpointError, ConfigError
from deepfake_cli.synth.schema import RESUMABLE_KEYS, FaceGanConfig, validate

NOT_A_MODEL = "no face GAN here (no checkpoint.json); train one with dfk train-facegan"


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved face GAN (it can be resumed or sampled)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def read_config(folder: str | Path) -> FaceGanConfig:
    """The resolved config saved in a model folder."""
    return read_model_config(folder, FaceGanConfig, "model folder has no config.yaml", validate)


def write_config(folder: str | Path, config: FaceGanConfig) -> None:
    """Save the resolved config as ``config.yaml``."""
    write_model_config(folder, config)


def check_resumable(saved: FaceGanConfig, wanted: FaceGanConfig, folder: str | Path) -> None:
    """``ConfigError`` (one line) when ``wanted`` changes a setting other than ``RESUMABLE_KEYS``."""
    keys = [key for key in leaf_keys(FaceGanConfig) if key not in RESUMABLE_KEYS]
    differing = diff_keys(to_dict(saved), to_dict(wanted), keys)
    if differing:
        raise ConfigError(f"cannot resume {folder} with other settings ({'; '.join(differing)}); "
                          "use a new model folder, or drop --preset/--config/--set to resume as it was")


def save(folder: str | Path, step: int, model: dict[str, Any], training: dict[str, Any], info: dict[str, Any],
         keep: int) -> None:
    """Write the checkpoint set of ``step`` and rotate ``model.step<N>.pt`` backups (``keep`` kept)."""
    save_model(folder, step, model, training, info, keep)


def load(folder: str | Path, training: bool = True) -> Checkpoint:
    """The newest complete checkpoint set of ``folder`` (``weights_only``); ``CheckpointError`` without one."""
    if not has_checkpoint(folder):
        raise CheckpointError(NOT_A_MODEL, str(folder))
    return load_model(folder, NOT_A_MODEL, "not a dfk face GAN checkpoint (no step or generator)",
                      lambda model: "generator" in model, training)
