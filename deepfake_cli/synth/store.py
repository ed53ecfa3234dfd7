"""The model folder of a face GAN: weights, optimiser state, config and bookkeeping.

``model.pt`` holds the weights (``{"step", "generator", "discriminator"[, "generator_ema"]}``),
``training.pt`` the optimisers' state, ``state.json`` the step and the run's record; the three are
saved as one checkpoint set (``deepfake_cli.checkpoint.save_set``), so a crash mid-save leaves the
previous step loadable. ``config.yaml`` is the resolved config the folder resumes with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from deepfake_cli.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_weights,
    open_set,
    read_json,
    rotate_backups,
    save_set,
    write_text_atomic,
)
from deepfake_cli.config import diff_keys, dump_yaml, from_dict, leaf_keys, to_dict
from deepfake_cli.errors import CheckpointError, ConfigError, DfkError
from deepfake_cli.synth.schema import RESUMABLE_KEYS, FaceGanConfig, validate

TRAINING_FILE = "training.pt"
NOT_A_MODEL = "no face GAN here (no checkpoint.json); train one with dfk train-facegan"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its step, weights, optimiser state (None when not asked for) and state.json."""

    step: int
    model: dict[str, Any]
    training: dict[str, Any] | None
    info: dict[str, Any]


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved face GAN (it can be resumed or sampled)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def read_config(folder: str | Path) -> FaceGanConfig:
    """The resolved config saved in a model folder."""
    path = Path(folder) / CONFIG_FILE
    try:
        return validate(from_dict(FaceGanConfig, yaml.safe_load(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        raise CheckpointError("model folder has no config.yaml", str(path)) from None
    except (yaml.YAMLError, DfkError) as exc:
        raise CheckpointError(f"unreadable config.yaml: {str(exc).splitlines()[0]}", str(path)) from None


def write_config(folder: str | Path, config: FaceGanConfig) -> None:
    """Save the resolved config as ``config.yaml``."""
    write_text_atomic(Path(folder) / CONFIG_FILE, dump_yaml(config))


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
    state = json.dumps({**info, "step": step}, indent=2) + "\n"
    saved = save_set(folder, step, {
        TRAINING_FILE: lambda path: torch.save({"step": step, **training}, path),
        MODEL_FILE: lambda path: torch.save({"step": step, **model}, path),
        STATE_FILE: lambda path: path.write_text(state, encoding="utf-8"),
    })
    if step > 0:
        rotate_backups(folder, step, keep, source=saved.paths[MODEL_FILE])


def load(folder: str | Path, training: bool = True) -> Checkpoint:
    """The newest complete checkpoint of ``folder`` (``weights_only``); ``CheckpointError`` without one."""
    found = open_set(folder)
    if found is None or MODEL_FILE not in found.paths:
        raise CheckpointError(NOT_A_MODEL, str(folder))
    model = load_weights(found.paths[MODEL_FILE])
    if not isinstance(model.get("step"), int) or "generator" not in model:
        raise CheckpointError("not a dfk face GAN checkpoint (no step or generator)", str(found.paths[MODEL_FILE]))
    step = model.pop("step")
    state = read_json(found.paths[STATE_FILE]) if STATE_FILE in found.paths else {}
    optim = load_weights(found.paths[TRAINING_FILE]) if training and TRAINING_FILE in found.paths else None
    return Checkpoint(step, model, optim, state)
