"""The learned reenactment model (first-order-motion class): keypoints, dense motion, generator.

Coordinates are normalised to [-1, 1] (x, y) as ``grid_sample`` reads them with
``align_corners=False``. ``KeypointDetector`` finds K keypoints as soft-argmax of heatmaps (and a
local 2x2 affine jacobian at each); ``DenseMotion`` turns the keypoints of a source and a driving
image into K + 1 sparse motions (one per keypoint, one for the still background), blends them into
one backward flow with predicted masks and predicts an occlusion map; ``Generator`` encodes the
source, warps its features by the flow, weights them by the occlusion map and decodes the driving
image. Plain ``nn.Module``s: no files, no config objects.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Keypoints = dict[str, torch.Tensor]  # "value" [N,K,2] and "jacobian" [N,K,2,2]
KEYPOINT_VARIANCE = 0.01  # of the Gaussians that show keypoints to the dense motion network


def coordinate_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """``[H,W,2]`` (x, y) pixel-centre coordinates in [-1, 1], as ``grid_sample`` reads them."""
    ys = (2 * torch.arange(height, device=like.device, dtype=like.dtype) + 1) / height - 1
    xs = (2 * torch.arange(width, device=like.device, dtype=like.dtype) + 1) / width - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A backward flow ``[N,H,W,2]`` resampled to ``size``: its displacement from the identity is
    interpolated, so the identity stays exactly the identity."""
    grid = coordinate_grid(flow.shape[1], flow.shape[2], flow)
    displacement = (flow - grid).permute(0, 3, 1, 2)
    if displacement.shape[-2:] != size:
        displacement = F.interpolate(displacement, size=size, mode="bilinear", align_corners=False)
    return coordinate_grid(*size, flow) + displacement.permute(0, 2, 3, 1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image [N,C,H,W]`` sampled at the flow's coordinates (resized to the image first)."""
    grid = resize_flow(flow, tuple(image.shape[-2:]))
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class Hourglass(nn.Module):
    """A U-Net: ``len(widths)`` halvings and as many doublings with skip connections; its output
    (``out_channels`` = ``widths[0]`` + input channels) is the last decoder block's features
    concatenated with the input."""

    def __init__(self, channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        previous = channels
        for width in widths:
            self.down.append(_block(previous, width))
            previous = width
        self.up = nn.ModuleList()
        outputs = [*reversed(widths[:-1]), widths[0]]
        for output, skip in zip(outputs, reversed([channels, *widths[:-1]]), strict=True):
            self.up.append(_block(previous, output))
            previous = output + skip
        self.out_channels = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            x = F.avg_pool2d(block(x), 2)
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = torch.cat([x, skips.pop()], dim=1)
        return x


def _downscale(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1:
        return image
    return F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)


class KeypointDetector(nn.Module):
    """K keypoints (soft-argmax of heatmaps with ``temperature``) and their local jacobians, found
    at ``scale`` of the input size; ``jacobian=False`` gives identity jacobians."""

    def __init__(self, keypoints: int, widths: Sequence[int], temperature: float = 0.1, scale: float = 1.0,
                 jacobian: bool = True, channels: int = 3) -> None:
        super().__init__()
        self.temperature, self.scale, self.keypoints = temperature, scale, keypoints
        self.body = Hourglass(channels, widths)
        self.heatmaps = nn.Conv2d(self.body.out_channels, keypoints, 7, padding=3)
        self.jacobian = nn.Conv2d(self.body.out_channels, 4 * keypoints, 7, padding=3) if jacobian else None
        if self.jacobian is not None:  # start from identity jacobians
            nn.init.zeros_(self.jacobian.weight)
            self.jacobian.bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(keypoints))

    def forward(self, image: torch.Tensor) -> Keypoints:
        features = self.body(_downscale(image, self.scale))
        logits = self.heatmaps(features)
        n, k, h, w = logits.shape
        heat = F.softmax(logits.flatten(2) / self.temperature, dim=2).view(n, k, h, w, 1)
        value = (heat * coordinate_grid(h, w, logits)).sum(dim=(2, 3))
        if self.jacobian is None:
            jacobian = torch.eye(2, device=image.device, dtype=value.dtype).expand(n, k, 2, 2)
        else:
            maps = self.jacobian(features).view(n, k, 4, h, w)
            jacobian = (maps * heat.view(n, k, 1, h, w)).sum(dim=(3, 4)).view(n, k, 2, 2)
        return {"value": value, "jacobian": jacobian}


def relative_keypoints(source: Keypoints, driving: Keypoints, initial: Keypoints) -> Keypoints:
    """The source's keypoints moved as the driving ones moved since ``initial`` (the driving
    video's first frame): positions shifted by the difference, jacobians composed."""
    value = source["value"] + (driving["value"] - initial["value"])
    jacobian = driving["jacobian"] @ torch.linalg.inv(initial["jacobian"]) @ source["jacobian"]
    return {"value": value, "jacobian": jacobian}


def _gaussians(value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[N,K,H,W]`` Gaussian blobs at keypoints ``value [N,K,2]``."""
    grid = coordinate_grid(height, width, value)
    distance = ((grid[None, None] - value[:, :, None, None, :]) ** 2).sum(-1)
    return torch.exp(-0.5 * distance / KEYPOINT_VARIANCE)


def sparse_motions(height: int, width: int, source: Keypoints, driving: Keypoints) -> torch.Tensor:
    """``[N,K+1,H,W,2]``: for each driving-frame pixel, where it comes from in the source under
    each keypoint's local affine motion (index 0: the background, which does not move)."""
    value_s, value_d = source["value"], driving["value"]
    grid = coordinate_grid(height, width, value_s)[None, None]  # [1,1,H,W,2]
    jacobian = source["jacobian"] @ torch.linalg.inv(driving["jacobian"])  # [N,K,2,2]
    offset = grid - value_d[:, :, None, None, :]
    moved = torch.einsum("nkij,nkhwj->nkhwi", jacobian, offset) + value_s[:, :, None, None, :]
    background = grid.expand(value_s.shape[0], 1, height, width, 2)
    return torch.cat([background, moved], dim=1)


class DenseMotion(nn.Module):
    """Backward flow (driving -> source) and occlusion map at ``scale`` of the input size."""

    def __init__(self, keypoints: int, widths: Sequence[int], scale: float = 1.0, occlusion: bool = True,
                 channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.body = Hourglass((keypoints + 1) * (channels + 1), widths)
        self.mask = nn.Conv2d(self.body.out_channels, keypoints + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(self.body.out_channels, 1, 7, padding=3) if occlusion else None

    def forward(self, source: torch.Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict[str, torch.Tensor]:
        image = _downscale(source, self.scale)
        n, c, h, w = image.shape
        heat = _gaussians(kp_driving["value"], h, w) - _gaussians(kp_source["value"], h, w)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1).unsqueeze(2)  # [N,K+1,1,H,W]
        motions = sparse_motions(h, w, kp_source, kp_driving)  # [N,K+1,H,W,2]
        parts = motions.shape[1]
        repeated = image.unsqueeze(1).expand(n, parts, c, h, w).reshape(n * parts, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(n * parts, h, w, 2), mode="bilinear",
                                 padding_mode="border", align_corners=False).view(n, parts, c, h, w)
        features = self.body(torch.cat([heat, deformed], dim=2).view(n, parts * (c + 1), h, w))
        mask = F.softmax(self.mask(features), dim=1)  # [N,K+1,H,W]
        flow = (mask.unsqueeze(-1) * motions).sum(dim=1)  # [N,H,W,2]
        occlusion = (torch.sigmoid(self.occlusion(features)) if self.occlusion is not None
                     else torch.ones_like(mask[:, :1]))
        return {"flow": flow, "occlusion": occlusion, "mask": mask}


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Encoder (a 7x7 conv, then one halving per width after the first), feature warp by the flow
    weighted by the occlusion map, residual bottleneck, mirrored decoder, sigmoid RGB."""

    def __init__(self, widths: Sequence[int], residual_blocks: int, channels: int = 3) -> None:
        super().__init__()
        self.first = _block(channels, widths[0])
        self.down = nn.ModuleList(_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.bottleneck = nn.Sequential(*(_Residual(widths[-1]) for _ in range(residual_blocks)))
        self.up = nn.ModuleList(_block(b, a) for a, b in reversed(list(zip(widths[:-1], widths[1:], strict=True))))
        self.last = nn.Conv2d(widths[0], channels, 7, padding=3)

    def forward(self, source: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        x = self.first(source)
        for block in self.down:
            x = F.avg_pool2d(block(x), 2)
        x = warp(x, flow)
        if occlusion.shape[-2:] != x.shape[-2:]:
            occlusion = F.interpolate(occlusion, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = self.bottleneck(x * occlusion)
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return torch.sigmoid(self.last(x))


class ReenactNet(nn.Module):
    """The three networks together. ``animate`` makes the image of ``source`` with keypoints
    ``kp_driving``; ``forward`` reconstructs ``driving`` from ``source`` (self-supervised training)."""

    def __init__(self, keypoints: int = 10, kp_widths: Sequence[int] = (32, 64, 128),
                 motion_widths: Sequence[int] = (32, 64, 128), generator_widths: Sequence[int] = (32, 64, 128),
                 residual_blocks: int = 2, temperature: float = 0.1, motion_scale: float = 1.0,
                 jacobian: bool = True, occlusion: bool = True) -> None:
        super().__init__()
        self.keypoints = KeypointDetector(keypoints, kp_widths, temperature, motion_scale, jacobian)
        self.motion = DenseMotion(keypoints, motion_widths, motion_scale, occlusion)
        self.generator = Generator(generator_widths, residual_blocks)

    def animate(self, source: torch.Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict[str, torch.Tensor]:
        """``prediction`` (RGB in [0, 1]), ``flow`` and ``occlusion`` for the driving keypoints."""
        motion = self.motion(source, kp_source, kp_driving)
        prediction = self.generator(source, motion["flow"], motion["occlusion"])
        return {"prediction": prediction, "flow": motion["flow"], "occlusion": motion["occlusion"]}

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        kp_source, kp_driving = self.keypoints(source), self.keypoints(driving)
        out = self.animate(source, kp_source, kp_driving)
        out.update({"kp_driving": kp_driving["value"], "jacobian_driving": kp_driving["jacobian"]})
        return out
