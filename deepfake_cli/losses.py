"""Image-comparison losses any trainer may use: L1 (weighted), SSIM / multi-scale SSIM, DSSIM, edge.

All image inputs are float tensors ``[N,C,H,W]`` in [0, 1].
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error; with ``weight [N,1,H,W]`` a weighted mean (eyes/mouth count more)."""
    error = (pred - target).abs()
    if weight is None:
        return error.mean()
    return (error * weight).sum() / (weight.sum() * pred.shape[1])


# Multi-scale SSIM's scale weights (Wang, Simoncelli & Bovik 2003), finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


@functools.lru_cache(maxsize=32)
def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    """The normalised 2-D Gaussian as a depthwise conv kernel (built once per size and device)."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    line = torch.exp(-(coords**2) / (2 * sigma**2))
    line = line / line.sum()
    return (line[:, None] * line[None, :]).expand(channels, 1, size, size).contiguous()


@functools.lru_cache(maxsize=8)
def _scale_exponents(scales: int) -> tuple[float, ...]:
    """The MS-SSIM scale weights renormalised to ``scales``, as float32 values in Python floats (a
    device tensor made from a list each step would be a host-to-device copy the step waits on)."""
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales], dtype=np.float32)
    return tuple(float(w) for w in weights / weights.sum(dtype=np.float32))


def _ssim_parts(pred: torch.Tensor, target: torch.Tensor, window: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel luminance term and contrast-structure term of SSIM (reflect-padded, same size)."""
    channels = pred.shape[1]
    kernel = _gaussian_window(min(window, pred.shape[-1]) | 1, sigma, channels, pred.device)
    pad = kernel.shape[-1] // 2
    stacked = F.pad(torch.cat([pred, target, pred * pred, target * target, pred * target]), [pad] * 4, mode="reflect")
    mu_p, mu_t, pp, tt, pt = F.conv2d(stacked, kernel, groups=channels).chunk(5)
    var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
    luminance = (2 * mu_p * mu_t + SSIM_C1) / (mu_p**2 + mu_t**2 + SSIM_C1)
    contrast_structure = (2 * cov + SSIM_C2) / (var_p + var_t + SSIM_C2)
    return luminance, contrast_structure


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    return (values * weight).sum() / (weight.sum() * values.shape[1])


def ssim(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, scales: int = 1,
         window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of two image batches in [0, 1] (1 = identical), as a scalar.

    ``scales`` > 1 is multi-scale SSIM: contrast-structure at each of ``scales`` halvings (the
    weight map pooled alongside) and luminance at the coarsest, combined with the standard scale
    weights renormalised to ``scales``. Computed in float32; ``weight [N,1,H,W]`` weights pixels.
    """
    pred, target = pred.float(), target.float()
    weight = None if weight is None else weight.float()
    factors = _scale_exponents(scales)
    result = pred.new_ones(())
    for scale in range(scales):
        luminance, contrast_structure = _ssim_parts(pred, target, window, sigma)
        last = scale == scales - 1
        value = _weighted_mean(luminance * contrast_structure if last else contrast_structure, weight)
        result = result * value.clamp(min=1e-6) ** factors[scale]
        if not last:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            weight = None if weight is None else F.avg_pool2d(weight, 2)
    return result


def dssim_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               scales: int = 1) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2``: 0 for identical images (see ``ssim``)."""
    return (1.0 - ssim(pred, target, weight, scales)) / 2.0


def image_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical forward differences of an image batch."""
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


def edge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the horizontal and vertical image gradients."""
    (pdx, pdy), (tdx, tdy) = image_gradients(pred), image_gradients(target)
    return (pdx - tdx).abs().mean() + (pdy - tdy).abs().mean()
