"""Loss terms of swap training: reconstruction (L1, DSSIM / MS-SSIM), edge, adversarial, perceptual,
mask regularisation.

All image inputs are float tensors ``[N,C,H,W]`` in [0, 1]. Only ``load_perceptual`` touches files
(the frozen backbone's weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG19_Weights

from deepfake_cli.checkpoint import load_weights
from deepfake_cli.errors import BackendError, CheckpointError
from deepfake_cli.losses import dssim_loss, edge_loss, image_gradients, ssim, weighted_l1

__all__ = ["dssim_loss", "edge_loss", "ssim", "weighted_l1", "discriminator_loss", "generator_adversarial_loss",
           "mask_total_variation", "PerceptualLoss", "load_perceptual"]

# VGG19's feature layers up to relu4_4 ("M" = max-pool), indexed like torchvision's ``features``,
# and the index of each ReLU output that can serve as a perceptual feature.
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
VGG_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mask_total_variation(mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute gradient of a mask: small for smooth masks."""
    dx, dy = image_gradients(mask)
    return dx.abs().mean() + dy.abs().mean()


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, mode: str) -> torch.Tensor:
    """Discriminator loss on real and fake logits: ``lsgan`` (least squares) or ``hinge``."""
    real, fake = real.float(), fake.float()
    if mode == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return ((real - 1.0) ** 2).mean() + (fake**2).mean()


def generator_adversarial_loss(fake: torch.Tensor, mode: str) -> torch.Tensor:
    """The generator's adversarial loss on the discriminator's logits for its output."""
    fake = fake.float()
    if mode == "hinge":
        return -fake.mean()
    return ((fake - 1.0) ** 2).mean()


class PerceptualLoss(nn.Module):
    """Mean L1 distance between frozen VGG19 features (ReLU outputs named in ``taps``) of two images."""

    def __init__(self, taps: Sequence[str] = tuple(VGG_TAPS)) -> None:
        super().__init__()
        self.taps = sorted(VGG_TAPS[name] for name in taps)
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers[: self.taps[-1] + 1]).eval()
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _taps(self, image: torch.Tensor) -> list[torch.Tensor]:
        out, taps = (image - self.mean) / self.std, []
        for index, layer in enumerate(self.features):
            out = layer(out)
            if index in self.taps:
                taps.append(out)
        return taps

    def train(self, mode: bool = True) -> PerceptualLoss:
        """The backbone always stays in eval mode."""
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self._taps(target)
        got = self._taps(pred)
        return sum((g.float() - w.float()).abs().mean() for g, w in zip(got, wanted, strict=True)) / len(self.taps)


def _state_dict_from(weights: str) -> dict[str, torch.Tensor] | None:
    """The VGG19 state dict that ``weights`` (imagenet | random | path) names; None for random."""
    if weights == "random":
        return None
    if weights == "imagenet":
        try:
            return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except (OSError, RuntimeError) as exc:
            raise BackendError(
                f"cannot get the VGG19 ImageNet weights for the perceptual loss ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no network?'}). Download "
                f"{VGG19_Weights.IMAGENET1K_V1.url} on a connected machine and pass "
                "--set perceptual.weights=PATH, or turn the term off with --set loss.perceptual=0",
                "perceptual.weights") from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackendError("perceptual weights file not found; give imagenet, random or a path to a "
                           "VGG19 state dict (or --set loss.perceptual=0)", str(path))
    try:
        return load_weights(path)
    except CheckpointError as exc:
        raise BackendError(f"cannot read perceptual weights: {exc.message}", str(path)) from None


def load_perceptual(weights: str, taps: Sequence[str], device: torch.device) -> PerceptualLoss:
    """Build the frozen perceptual backbone: ``imagenet`` (torchvision), ``random`` or a file.

    A file may hold a full torchvision VGG19 state dict or only its ``features``. Raises
    ``BackendError`` with instructions when the weights cannot be had.
    """
    loss = PerceptualLoss(taps)
    state = _state_dict_from(weights)
    if state is not None:
        wanted = loss.features.state_dict().keys()
        features = {k.removeprefix("features."): v for k, v in state.items()}
        try:
            loss.features.load_state_dict({k: features[k] for k in wanted})
        except (KeyError, RuntimeError) as exc:
            raise BackendError(f"perceptual weights do not fit VGG19: {str(exc).splitlines()[0]}",
                               weights) from None
    return loss.to(device)
