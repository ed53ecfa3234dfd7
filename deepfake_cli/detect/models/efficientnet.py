"""``efficientnet_b0`` / ``efficientnet_b4``: torchvision's EfficientNet as a frame-level detector.

The ImageNet classifier is replaced by dropout and one logit. ``model.weights`` chooses the
starting point of the backbone: ``imagenet`` (torchvision's weights, fetched once into the torch hub
cache), a local file ``PATH`` (a state dict of the same torchvision architecture, loaded with
``weights_only``), or ``none`` (train from scratch). Inputs are RGB, normalised with ImageNet's
mean and std.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from deepfake_cli.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD
from deepfake_cli.detect.models.base import DetectorNet
from deepfake_cli.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig

log = logging.getLogger(__name__)

VARIANTS: dict[str, tuple[Callable[..., nn.Module], Any]] = {
    "efficientnet_b0": (torchvision.models.efficientnet_b0, torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1),
    "efficientnet_b4": (torchvision.models.efficientnet_b4, torchvision.models.EfficientNet_B4_Weights.IMAGENET1K_V1),
}


class EfficientNetDetector(DetectorNet):
    """A torchvision EfficientNet (``net``) whose classifier gives one logit per face."""

    kind = "frame"

    def __init__(self, variant: str, dropout: float = 0.2) -> None:
        super().__init__(3, IMAGENET_MEAN, IMAGENET_STD)
        self.variant = variant
        self.net = VARIANTS[variant][0](weights=None)
        features = self.net.classifier[1].in_features
        self.net.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``B``) for RGB faces ``B x 3 x H x W``."""
        return self.net(x).squeeze(1)

    def load_pretrained(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Backbone weights of the same variant (any classifier in ``state`` is ignored)."""
        backbone = {k.removeprefix("net."): v for k, v in state.items()
                    if not k.removeprefix("net.").startswith("classifier.")}
        try:
            missing, unexpected = self.net.load_state_dict(backbone, strict=False)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
            raise ConfigError(f"model.weights are not {self.variant} weights: {first}", where) from None
        missing = [k for k in missing if not k.startswith("classifier.")]
        if missing or unexpected:
            problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise ConfigError(f"model.weights are not {self.variant} weights ({problem}, "
                              f"{len(missing)} missing, {len(unexpected)} unexpected keys)", where)


def imagenet_weights(variant: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict of ``variant``, downloaded once into the torch hub cache.

    Offline and not cached: one ``CheckpointError`` naming the file, where it is looked for, the
    URL, and the two ways out (a local ``model.weights=PATH`` or ``model.weights=none``).
    """
    weights = VARIANTS[variant][1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not cached.is_file():
        log.info("downloading the ImageNet weights of %s from %s to %s", variant, weights.url, cached)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(cached), progress=False)
        except Exception as exc:  # offline, proxy, HTTP error: every failure has the same ways out
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"model.weights: imagenet needs {cached.name}, which is not in {cached.parent} and could not be "
                f"downloaded from {weights.url} ({reason}); download it on a machine with internet and put it "
                f"there (or anywhere and use --set model.weights=PATH), or train from scratch with "
                f"--set model.weights=none", variant) from None
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt ImageNet weights file ({first}); delete it to download it again, or use "
                              "--set model.weights=PATH or --set model.weights=none", str(cached)) from None


def builder(variant: str) -> Callable[["DetectConfig", int], EfficientNetDetector]:
    """The registry's build function for ``variant``."""
    def build(config: "DetectConfig", channels: int) -> EfficientNetDetector:
        return EfficientNetDetector(variant, config.model.dropout)
    return build
