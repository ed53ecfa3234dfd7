"""The model folder of a learned reenactment model: weights, optimiser state, config, bookkeeping.

``model.pt`` holds ``{"step", "net"}`` (the ``ReenactNet`` state dict), ``training.pt`` the
optimiser state, ``state.json`` the step, training time and the run record (config less the keys
a resume may change, seed, inputs). The three are one checkpoint set (``checkpoint.save_set``), so
a crash mid-save leaves the previous step loadable; ``model.step<N>.pt`` backups are rotated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfake_cli.checkpoint import (
    Checkpoint,
    cpu_copy,
    has_model,
    load_model,
    read_model_config,
    save_model,
    write_model_config,
)
from deepfake_cli.reenact.model import ReenactNet
from deepfake_cli.reenact.schema import ModelConfig, ReenactConfig, validate

KIND = "reenact"


def build_net(model: ModelConfig) -> ReenactNet:
    """The ``ReenactNet`` of a config's ``model`` section."""
    return ReenactNet(model.keypoints, model.kp_widths, model.motion_widths, model.generator_widths,
                      model.residual_blocks, model.temperature, model.motion_scale, model.jacobian, model.occlusion)


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint to resume or load."""
    return has_model(folder)


def read_config(folder: Path) -> ReenactConfig:
    """The resolved config saved beside the weights (``CheckpointError`` if absent or unreadable)."""
    return read_model_config(folder, ReenactConfig, "not a train-reenact model folder (no config.yaml)", validate,
                             "unreadable config.yaml (not written by train-reenact?)")


def write_config(folder: Path, config: ReenactConfig) -> None:
    """Save the resolved config as ``config.yaml``."""
    write_model_config(folder, config)


def load(folder: Path, training: bool = True) -> Checkpoint:
    """The newest complete checkpoint of ``folder`` (weights loaded with ``weights_only``); the
    ``ReenactNet`` state dict is ``checkpoint.model["net"]``."""
    return load_model(folder, "no trained reenactment model here (no model.pt); train one with dfk train-reenact",
                      "not a train-reenact checkpoint", _is_reenact, training)


def _is_reenact(model: dict[str, Any]) -> bool:
    return model.get("kind") == KIND and isinstance(model.get("net"), dict)


def save(folder: Path, step: int, net: dict[str, Any], training: dict[str, Any], info: dict[str, Any],
         keep: int) -> None:
    """Write the checkpoint set of ``step`` and rotate the ``model.step<N>.pt`` backups."""
    save_model(folder, step, {"kind": KIND, "net": cpu_copy(net)}, cpu_copy(training), info, keep)
