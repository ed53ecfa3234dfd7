"""The interface every detector architecture implements.

A detector is a ``torch.nn.Module`` subclass of ``DetectorNet`` with:

- ``kind``: ``"sequence"`` (input ``B x T x C x H x W``, one logit per sequence) or ``"frame"``
  (input ``B x C x H x W``, one logit per face); positive logits mean fake;
- ``normalise(x)``: uint8 pixels (on the model's device) to the float input ``forward`` expects,
  with per-channel mean and std (non-persistent buffers: they never enter ``model.pt``);
- optionally ``layers()``: the backbone's layers input first, which ``freeze(n)`` uses to keep the
  first ``n`` at their starting (ImageNet) weights (``model.freeze``).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

HALF = 0.5  # default per-channel mean and std: pixels scaled to [-1, 1]


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

    def layers(self) -> list[nn.Module]:
        """The backbone's layers, input first (pretrained architectures); none by default."""
        return []

    def freeze(self, count: int) -> None:
        """Keep the first ``count`` of ``layers()`` fixed: no gradients, and their batch-norm
        statistics stay as loaded (those layers stay in eval mode when the model trains). Training
        then neither updates nor back-propagates through them: faster on a CPU, and a small
        dataset cannot overwrite the generic features they hold."""
        layers = self.layers()
        if count > len(layers):
            raise ValueError(f"model.freeze {count} exceeds the {len(layers)} layers of this backbone")
        self._frozen = layers[:count]  # a plain list: the layers are not registered (nor saved) twice
        for layer in layers[:count]:
            layer.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "DetectorNet":
        super().train(mode)
        for layer in getattr(self, "_frozen", []):
            layer.eval()
        return self

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``... x C x H x W`` pixels to float32 ``(x / 255 - mean) / std``, on ``x``'s device."""
        return x.float().div_(255.0).sub_(self.input_mean).div_(self.input_std)
