"""Differentiable augmentation (DiffAugment-style) for GANs trained on few faces.

The same random colour, translation and cutout are applied to real and generated faces before the
discriminator sees them, in both the discriminator's and the generator's step; every op is made of
differentiable tensor operations, so the generator's gradient flows through them. The
discriminator then cannot memorise the few real faces, while the generator is still pushed
towards un-augmented faces (the ops are applied to both sides alike).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

TRANSLATION = 0.125  # largest shift, as a share of the side
CUTOUT = 0.5  # side of the cut-out square, as a share of the side


def color(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Random brightness, saturation and contrast per face (images in [-1, 1])."""
    b = x.shape[0]
    rand = lambda: torch.rand(b, 1, 1, 1, device=x.device, generator=g, dtype=x.dtype)  # noqa: E731
    x = x + (rand() - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (rand() * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (rand() + 0.5) + mean


def translation(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Shift each face by up to ``TRANSLATION`` of its side, zero-padded (integer pixels)."""
    b, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device, generator=g)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device, generator=g)
    ys = torch.arange(h, device=x.device).view(1, h, 1) + dy + 1
    xs = torch.arange(w, device=x.device).view(1, 1, w) + dx + 1
    padded = F.pad(x, (1, 1, 1, 1))
    ys, xs = ys.clamp(0, h + 1).expand(b, h, w), xs.clamp(0, w + 1).expand(b, h, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, ys, xs].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Zero a random square ``CUTOUT`` of the side wide, inside each face."""
    b, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    y0 = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device, generator=g)
    x0 = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device, generator=g)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - y0
    xs = torch.arange(w, device=x.device).view(1, 1, w) - x0
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout,
}


def diff_augment(x: torch.Tensor, ops: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` through each op named in ``ops`` (keys of ``OPS``), in order; ``[]`` returns ``x``."""
    for name in ops:
        x = OPS[name](x, generator)
    return x
