"""A trained detector on disk: ``model.pt`` (weights only), ``config.yaml``, ``state.json``.

``config.yaml`` names the architecture (``model.name``), so ``load_detector`` rebuilds whichever
registry model was trained, without fetching any pretrained weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from deepfake_cli import __version__
from deepfake_cli.checkpoint import (
    CONFIG_FILE, MODEL_FILE, STATE_FILE, load_weights, read_json, save_weights, write_json_atomic, write_text_atomic,
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
    """Write weights, resolved config and state atomically into ``folder``."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_weights(folder / MODEL_FILE, {"model": weights})
    write_text_atomic(folder / CONFIG_FILE, dump_yaml(config))
    write_state(folder, state)


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state.json`` (with the dfk and torch versions) atomically."""
    write_json_atomic(folder / STATE_FILE, {"tool": f"dfk {__version__}", "torch": torch.__version__} | state)


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
    if not (base / MODEL_FILE).is_file() or not (base / CONFIG_FILE).is_file():
        raise CheckpointError("not a detector directory (needs model.pt and config.yaml)", str(base))
    try:
        raw = yaml.safe_load((base / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        config = validate(from_dict(DetectConfig, raw))
    except (yaml.YAMLError, ConfigError) as exc:
        raise CheckpointError(f"unusable config.yaml: {exc}", str(base)) from None
    payload = load_weights(base / MODEL_FILE)
    model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights do not match config.yaml: {first}", str(base)) from None
    state = read_json(base / STATE_FILE) if (base / STATE_FILE).is_file() else {}
    return LoadedDetector(model=model.to(device).eval(), config=config, state=state, folder=base)
