"""The model folder of a learned reenactment model: weights, optimiser state, config, bookkeeping.

``model.pt`` holds ``{"step", "net"}`` (the ``ReenactNet`` state dict), ``training.pt`` the
optimiser state, ``state.json`` the step, training time and the run record (config less the keys
a resume may change, seed, inputs). The three are one checkpoint set (``checkpoint.save_set``), so
a crash mid-save leaves the previous step loadable; ``model.step<N>.pt`` backups are rotated.
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
    cpu_copy,
    load_weights,
    open_set,
    read_json,
    rotate_backups,
    save_set,
    write_text_atomic,
)
from deepfake_cli.config import dump_yaml, from_dict
from deepfake_cli.errors import CheckpointError, DfkError
from deepfake_cli.reenact.model import ReenactNet
from deepfake_cli.reenact.schema import ModelConfig, ReenactConfig, validate

TRAINING_FILE = "training.pt"
KIND = "reenact"


@dataclass
class Checkpoint:
    """What a model folder holds: step, network weights, optimiser state (None if absent), state.json."""

    step: int
    net: dict[str, Any]
    training: dict[str, Any] | None
    info: dict[str, Any]


def build_net(model: ModelConfig) -> ReenactNet:
    """The ``ReenactNet`` of a config's ``model`` section."""
    return ReenactNet(model.keypoints, model.kp_widths, model.motion_widths, model.generator_widths,
                      model.residual_blocks, model.temperature, model.motion_scale, model.jacobian, model.occlusion)


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint to resume or load."""
    return (folder / MANIFEST_FILE).is_file() or (folder / MODEL_FILE).is_file()


def read_config(folder: Path) -> ReenactConfig:
    """The resolved config saved beside the weights (``CheckpointError`` if absent or unreadable)."""
    path = folder / CONFIG_FILE
    try:
        return validate(from_dict(ReenactConfig, yaml.safe_load(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        raise CheckpointError("not a train-reenact model folder (no config.yaml)", str(folder)) from None
    except (yaml.YAMLError, DfkError) as exc:
        raise CheckpointError(f"unreadable config.yaml (not written by train-reenact?): {str(exc).splitlines()[0]}",
                              str(path)) from None


def write_config(folder: Path, config: ReenactConfig) -> None:
    """Save the resolved config as ``config.yaml``."""
    write_text_atomic(folder / CONFIG_FILE, dump_yaml(config))


def load(folder: Path, training: bool = True) -> Checkpoint:
    """The newest complete checkpoint of ``folder`` (weights loaded with ``weights_only``)."""
    if not has_checkpoint(folder):
        raise CheckpointError("no trained reenactment model here (no model.pt); train one with dfk train-reenact",
                              str(folder))
    found = open_set(folder)
    paths = found.paths if found is not None else {n: folder / n for n in (MODEL_FILE, TRAINING_FILE, STATE_FILE)}
    model = load_weights(paths[MODEL_FILE])
    if model.get("kind") != KIND or not isinstance(model.get("step"), int) or not isinstance(model.get("net"), dict):
        raise CheckpointError("not a train-reenact checkpoint", str(paths[MODEL_FILE]))
    state_file, training_file = paths.get(STATE_FILE), paths.get(TRAINING_FILE)
    info = read_json(state_file) if state_file is not None and state_file.is_file() else {}
    state = None
    if training and training_file is not None and training_file.is_file():
        state = load_weights(training_file)
        if state.get("step") != model["step"]:
            state = None
    return Checkpoint(model["step"], model["net"], state, info)


def save(folder: Path, step: int, net: dict[str, Any], training: dict[str, Any], info: dict[str, Any],
         keep: int) -> None:
    """Write the checkpoint set of ``step`` and rotate the ``model.step<N>.pt`` backups."""
    net, training = cpu_copy(net), cpu_copy(training)
    state = json.dumps({**info, "step": step}, indent=2) + "\n"
    saved = save_set(folder, step, {
        TRAINING_FILE: lambda path: torch.save({"step": step, **training}, path),
        MODEL_FILE: lambda path: torch.save({"kind": KIND, "step": step, "net": net}, path),
        STATE_FILE: lambda path: path.write_text(state, encoding="utf-8"),
    })
    if step > 0:
        rotate_backups(folder, step, keep, source=saved.paths[MODEL_FILE])

