"""A DCGAN-class generator and discriminator for square faces (plain ``nn.Module``s, no I/O).

The generator maps noise ``z`` to a 4x4 grid, then doubles it with (4x4 stride-2 transposed conv,
pixel norm, leaky ReLU) blocks up to ``size`` and ends in a 3x3 conv and ``tanh``. Pixel norm
instead of batch norm keeps samples independent of the batch and of train/eval mode, so the
moving-average copy of the weights (EMA) samples exactly as trained. The discriminator mirrors it
with 4x4 stride-2 convolutions under spectral norm down to 4x4 and gives one logit per face.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

BASE = 4  # px of the first and last grid
MAX_WIDTH_FACTOR = 8


def widths(size: int, width: int) -> list[int]:
    """Channels at 4, 8, ..., ``size`` px: ``width`` at ``size``, doubling per halving, capped at 8x."""
    levels = int(math.log2(size // BASE))
    return [width * min(2 ** (levels - i), MAX_WIDTH_FACTOR) for i in range(levels + 1)]


class PixelNorm(nn.Module):
    """Scale each pixel's feature vector to unit mean square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """``z`` (``B x latent``) -> faces ``B x 3 x size x size`` in [-1, 1]."""

    def __init__(self, size: int = 64, latent: int = 128, width: int = 64) -> None:
        super().__init__()
        self.size, self.latent = size, latent
        chans = widths(size, width)
        self.project = nn.Sequential(nn.Linear(latent, chans[0] * BASE * BASE), nn.Unflatten(1, (chans[0], BASE, BASE)),
                                     PixelNorm(), nn.LeakyReLU(0.2))
        blocks = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), PixelNorm(), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_rgb(self.blocks(self.project(z))))


class Discriminator(nn.Module):
    """Faces ``B x 3 x size x size`` in [-1, 1] -> one realness logit each (``B``)."""

    def __init__(self, size: int = 64, width: int = 64) -> None:
        super().__init__()
        chans = [3, *widths(size, width)[-2::-1]]  # the image, then size/2 px ... 4 px
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Conv2d(chans[-1], 1, BASE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()
