"""The interface every detector architecture implements.

A detector is a ``torch.nn.Module`` subclass of ``DetectorNet`` with:

- ``kind``: ``"sequence"`` (input ``B x T x C x H x W``, one logit per sequence) or ``"frame"``
  (input ``B x C x H x W``, one logit per face); positive logits mean fake;
- ``normalise(x)``: uint8 pixels (on the model's device) to the float input ``forward`` expects,
  with per-channel mean and std (non-persistent buffers: they never enter ``model.pt``).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

HALF = 0.5  # default per-channel mean and std: pixels scaled to [-1, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DetectorNet(nn.Module):
    """Base class: the ``kind`` of input and the on-device normalisation."""

    kind: ClassVar[str] = "sequence"

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        mean = tuple(mean) if mean is not None else (HALF,) * channels
        std = tuple(std) if std is not None else (HALF,) * channels
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values")
        self.register_buffer("input_mean", torch.tensor(mean).view(channels, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(channels, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``... x C x H x W`` pixels to float32 ``(x / 255 - mean) / std``, on ``x``'s device."""
        return x.float().div_(255.0).sub_(self.input_mean).div_(self.input_std)
