"""SAGAN pieces: a self-attention block and a spectral-norm patch discriminator."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _maybe_sn(layer: nn.Conv2d, spectral: bool) -> nn.Module:
    return spectral_norm(layer) if spectral else layer


class SelfAttention(nn.Module):
    """Self-attention over all positions of a feature map (Zhang et al., SAGAN).

    Queries and keys use ``channels // 8`` channels; the output is added back scaled by a learned
    ``gamma`` that starts at 0, so a fresh block is the identity.
    """

    def __init__(self, channels: int, spectral: bool = False) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = _maybe_sn(nn.Conv2d(channels, inner, 1), spectral)
        self.key = _maybe_sn(nn.Conv2d(channels, inner, 1), spectral)
        self.value = _maybe_sn(nn.Conv2d(channels, channels, 1), spectral)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)
        k = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.gamma * out.squeeze(1).transpose(1, 2).reshape(n, c, h, w)


class Discriminator(nn.Module):
    """Patch discriminator: 4x4 stride-2 spectral-norm convs, self-attention at chosen sizes.

    Returns one logit per patch, shape ``[N, 1, h, w]``.
    """

    def __init__(self, size: int, widths: Sequence[int], attention_at: Sequence[int] = ()) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, resolution = 3, size
        for width in widths:
            layers += [_maybe_sn(nn.Conv2d(channels, width, 4, 2, 1), True), nn.LeakyReLU(0.2)]
            channels, resolution = width, resolution // 2
            if resolution in attention_at:
                layers.append(SelfAttention(channels, spectral=True))
        layers.append(_maybe_sn(nn.Conv2d(channels, 1, 3, 1, 1), True))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image * 2.0 - 1.0)


class Discriminators(nn.ModuleDict):
    """One ``Discriminator`` per identity, keyed by side (state dict keys ``<side>.net...``).

    ``forward`` scores the real and fake faces of every side in one call, as the discriminator
    update of a training step needs them, so a ``DistributedDataParallel`` wrapper sees that
    whole update as one forward.
    """

    def forward(self, real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """``(logits of real, logits of fake)`` per side, in the order of the sides' keys."""
        return tuple((self[side](r), self[side](f)) for side, r, f in zip(self.keys(), real, fake, strict=True))
