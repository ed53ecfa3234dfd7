"""A trained detector on disk: ``model.pt`` (weights only), ``config.yaml``, ``state.json``.

``config.yaml`` names the architecture (``model.name``), so ``load_detector`` rebuilds whichever
registry model was trained, without fetching any pretrained weights. The three files are saved as
one checkpoint set (``deepfake_cli.checkpoint.save_set``, step = the epoch kept), so a crash or a
full disk mid-save leaves the previous epoch's detector loadable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from deepfake_cli import __version__
from deepfake_cli.checkpoint import (
    CONFIG_FILE, MODEL_FILE, STATE_FILE, load_weights, open_set, read_json, save_set, write_json_atomic,
)
from deepfake_cli.config import dump_yaml, from_dict
from deepfake_cli.detect.config import DetectConfig, validate
from deepfake_cli.detect.models import DetectorNet, architecture
from deepfake_cli.detect.models import build_model as _build
from deepfake_cli.errors import CheckpointError, ConfigError


def build_model(config: DetectConfig) -> DetectorNet:
    """A freshly initialised detector of ``model.name`` shaped by ``config`` (no pretrained weights)."""
    return _build(config)


def save_detector(folder: Path, model: DetectorNet, config: DetectConfig, state: dict[str, Any]) -> None:
    """Write weights, resolved config and state into ``folder`` as one checkpoint set."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    text = dump_yaml(config)
    save_set(folder, _step(state), {
        MODEL_FILE: lambda path: torch.save({"model": weights}, path),
        CONFIG_FILE: lambda path: path.write_text(text, encoding="utf-8"),
        STATE_FILE: _state_writer(state),
    })


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Replace ``state.json`` with ``state`` stamped with the dfk and torch versions (``replace_state``)."""
    replace_state(folder, _stamped(state))


def replace_state(folder: Path, state: dict[str, Any]) -> None:
    """Replace ``state.json`` with ``state`` as it is: a new set reusing the current set's weights and
    config (hard links), or, in a folder without sets, one atomic write."""
    found = open_set(folder)
    if found is None:
        write_json_atomic(folder / STATE_FILE, state)
        return
    text = json.dumps(state, indent=2) + "\n"
    save_set(folder, _step(state), {MODEL_FILE: found.paths[MODEL_FILE], CONFIG_FILE: found.paths[CONFIG_FILE],
                                    STATE_FILE: lambda path: path.write_text(text, encoding="utf-8")})


def read_state(folder: Path) -> dict[str, Any] | None:
    """The detector's ``state.json`` (of the newest complete set), or None if it has none."""
    found = open_set(folder)
    path = found.paths[STATE_FILE] if found else folder / STATE_FILE
    return read_json(path) if path.is_file() else None


def _stamped(state: dict[str, Any]) -> dict[str, Any]:
    return {"tool": f"dfk {__version__}", "torch": torch.__version__} | state


def _state_writer(state: dict[str, Any]) -> Any:
    text = json.dumps(_stamped(state), indent=2) + "\n"
    return lambda path: path.write_text(text, encoding="utf-8")


def _step(state: dict[str, Any]) -> int:
    """The set's step: the epoch kept (0 when the state names none)."""
    epoch = state.get("epoch")
    return epoch if isinstance(epoch, int) else 0


def describe(model: DetectorNet, config: DetectConfig) -> dict[str, Any]:
    """The architecture as recorded in ``metrics.json`` and ``state.json``."""
    return {"name": config.model.name, "kind": architecture(config.model.name).kind,
            "weights": config.model.weights, "parameters": sum(p.numel() for p in model.parameters())}


@dataclass
class LoadedDetector:
    """A detector ready for inference."""

    model: DetectorNet
    config: DetectConfig
    state: dict[str, Any]
    folder: Path


def load_detector(folder: str | Path, device: torch.device) -> LoadedDetector:
    """Read a detector directory written by ``train-detect`` (weights loaded with weights_only)."""
    base = Path(folder)
    found = open_set(base) if base.is_dir() else None
    paths = found.paths if found else {name: base / name for name in (MODEL_FILE, CONFIG_FILE, STATE_FILE)}
    if not paths[MODEL_FILE].is_file() or not paths[CONFIG_FILE].is_file():
        raise CheckpointError("not a detector directory (needs model.pt and config.yaml)", str(base))
    try:
        raw = yaml.safe_load(paths[CONFIG_FILE].read_text(encoding="utf-8")) or {}
        config = validate(from_dict(DetectConfig, raw))
    except (yaml.YAMLError, ConfigError) as exc:
        raise CheckpointError(f"unusable config.yaml: {exc}", str(base)) from None
    payload = load_weights(paths[MODEL_FILE])
    model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights do not match config.yaml: {first}", str(base)) from None
    state = read_json(paths[STATE_FILE]) if paths[STATE_FILE].is_file() else {}
    return LoadedDetector(model=model.to(device).eval(), config=config, state=state, folder=base)
