"""``tiny_frame``: a small frame-level CNN for tests and demos (trains on a CPU in seconds).

Per ``model.hidden`` width: 3x3 conv, batch norm, ReLU, 2x2 max-pool; then average+max pooling
and a linear head. Input ``B x C x H x W``, one logit per face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from deepfake_cli.detect.models.base import DetectorNet

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig


class TinyFrameDetector(DetectorNet):
    """Conv-BN-ReLU-pool blocks and a linear head on pooled features."""

    kind = "frame"

    def __init__(self, in_channels: int, widths: Sequence[int] = (8, 16, 32), dropout: float = 0.0) -> None:
        super().__init__(in_channels)
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``B``) for faces ``B x C x H x W``."""
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)).squeeze(1)


def build(config: "DetectConfig", channels: int) -> TinyFrameDetector:
    """The tiny CNN with ``model.hidden`` widths and ``model.dropout``."""
    return TinyFrameDetector(channels, config.model.hidden, config.model.dropout)
