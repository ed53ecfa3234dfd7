"""Batched training augmentation in torch, on the training device (no per-image Python loops).

Each face gets colour jitter, a random similarity transform (rotation, zoom, shift, flip) and
random warp: a coarse grid of control points is displaced with Gaussian noise and smoothly
interpolated. The model sees the warped face and must reproduce the unwarped one (the target),
so it learns faces rather than pixels. Both come from one ``grid_sample`` of the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepfake_cli.swap.schema import AugmentConfig


@dataclass
class Batch:
    """One side's training batch: model input, reconstruction target, per-pixel loss weight and
    the target's face hull (0..1, what a learned mask should cover)."""

    warped: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor | None
    hull: torch.Tensor | None = None


def _uniform(n: int, spread: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2.0 - 1.0) * spread


class Augmenter:
    """Turns uint8 faces ``[N,3,S,S]`` (and optional weights and hulls ``[N,1,S,S]``) into a ``Batch``."""

    def __init__(self, config: AugmentConfig, generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator

    def __call__(self, images: torch.Tensor, weight: torch.Tensor | None = None,
                 hull: torch.Tensor | None = None) -> Batch:
        n, _, size, _ = images.shape
        device = images.device
        faces = self._jitter(images.float() / 255.0)
        extras = [t.float() for t in (weight, hull) if t is not None]
        planes = torch.cat([faces, *extras], dim=1)
        base = self._identity_grid(size, device)
        offsets = self._warp_offsets(n, size, device)
        affine = self._similarity(n, device).repeat(2, 1, 1)
        points = torch.cat([base.expand(n, -1, -1, -1), base + offsets])
        grids = torch.einsum("nhwk,njk->nhwj", points, affine[:, :, :2]) + affine[:, None, None, :, 2]
        sampled = F.grid_sample(planes.repeat(2, 1, 1, 1), grids, mode="bilinear",
                                padding_mode="reflection", align_corners=False)
        target, warped = sampled[:n], sampled[n:, :3]
        weight_out = None if weight is None else target[:, 3:4]
        hull_out = None if hull is None else target[:, -1:]
        return Batch(warped=warped.clamp(0, 1), target=target[:, :3].clamp(0, 1), weight=weight_out, hull=hull_out)

    @staticmethod
    def _identity_grid(size: int, device: torch.device) -> torch.Tensor:
        coords = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        return torch.stack([x, y], dim=-1).unsqueeze(0)

    def _warp_offsets(self, n: int, size: int, device: torch.device) -> torch.Tensor:
        """Smooth random displacement field ``[N,S,S,2]`` in normalised coordinates."""
        points = max(self.config.warp_points, 2)
        noise = torch.randn(n, 2, points, points, generator=self.generator, device=device)
        noise = noise * (2.0 * self.config.warp)
        field = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=True)
        return field.permute(0, 2, 3, 1)

    def _similarity(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample 2x3 maps from output to input normalised coordinates."""
        cfg = self.config
        angle = _uniform(n, math.radians(cfg.rotation), self.generator, device)
        scale = 1.0 + _uniform(n, cfg.zoom, self.generator, device)
        shift = torch.stack([_uniform(n, 2 * cfg.shift, self.generator, device) for _ in range(2)], dim=1)
        flip = torch.rand(n, generator=self.generator, device=device) < cfg.flip
        sign = 1.0 - 2.0 * flip.float()
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        row_x = torch.stack([cos * sign, -sin, shift[:, 0]], dim=1)
        row_y = torch.stack([sin * sign, cos, shift[:, 1]], dim=1)
        return torch.stack([row_x, row_y], dim=1)

    def _jitter(self, faces: torch.Tensor) -> torch.Tensor:
        """Random brightness, contrast and saturation per face."""
        cfg = self.config
        n, device = faces.shape[0], faces.device
        shape = (n, 1, 1, 1)
        brightness = 1.0 + _uniform(n, cfg.brightness, self.generator, device).view(shape)
        contrast = 1.0 + _uniform(n, cfg.contrast, self.generator, device).view(shape)
        saturation = 1.0 + _uniform(n, cfg.saturation, self.generator, device).view(shape)
        faces = faces * brightness
        mean = faces.mean(dim=(1, 2, 3), keepdim=True)
        faces = (faces - mean) * contrast + mean
        gray = (faces * faces.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return ((faces - gray) * saturation + gray).clamp(0, 1)
