"""Loss terms of swap training: reconstruction (L1, DSSIM / MS-SSIM), edge, adversarial, perceptual
(LPIPS-style, on a frozen ImageNet backbone), mask regularisation.

All image inputs are float tensors ``[N,C,H,W]`` in [0, 1]. Only ``load_perceptual`` touches files
(the frozen backbone's weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG19_Weights

from deepfake_cli.backbones import efficientnet_lite, mobilenet
from deepfake_cli.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD, WHEELS
from deepfake_cli.checkpoint import load_weights
from deepfake_cli.errors import BackendError, CheckpointError, ConfigError
from deepfake_cli.losses import dssim_loss, edge_loss, image_gradients, ssim, weighted_l1

__all__ = ["dssim_loss", "edge_loss", "ssim", "weighted_l1", "discriminator_loss", "generator_adversarial_loss",
           "mask_total_variation", "PerceptualLoss", "load_perceptual"]

# VGG19's feature layers up to relu4_4 ("M" = max-pool), indexed like torchvision's ``features``,
# and the index of each ReLU output that can serve as a perceptual feature.
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
VGG_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26}
LITE0 = "efficientnet_lite0"


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


def normalised_distance(got: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """LPIPS's distance without its learned weights: each pixel's feature vector scaled to unit
    length over the channels, the squared difference summed over channels (0..4), the mean over
    pixels and the batch. Computed in float32."""
    got, wanted = got.float(), wanted.float()
    got = got * torch.rsqrt(got.square().sum(1, keepdim=True) + 1e-10)
    wanted = wanted * torch.rsqrt(wanted.square().sum(1, keepdim=True) + 1e-10)
    return (got - wanted).square().sum(1).mean()


@dataclass(frozen=True)
class FeatureNetwork:
    """A frozen ImageNet backbone as a sequence of layers, and the outputs a perceptual loss may tap."""

    taps: dict[str, int]  # layer name -> index of its output in the sequence
    default: tuple[str, ...]
    mean: tuple[float, float, float]  # the input normalisation it was trained with
    std: tuple[float, float, float]
    layers: Callable[[dict[str, torch.Tensor] | None, str, int], nn.Sequential]  # (state, where, depth)
    wheel: str | None  # the ``backbones.pretrained.WHEELS`` entry holding its ImageNet weights


def _vgg19_layers(state: dict[str, torch.Tensor] | None, where: str, depth: int) -> nn.Sequential:
    """VGG19's first ``depth`` ``features`` (at most up to relu4_4); ``state`` a torchvision VGG19
    state dict or its ``features`` (those layers' tensors suffice)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
            channels = int(item)
    features = nn.Sequential(*layers[:depth])
    if state is not None:
        wanted = features.state_dict().keys()
        state = {k.removeprefix("features."): v for k, v in state.items()}
        try:
            features.load_state_dict({k: state[k] for k in wanted})
        except (KeyError, RuntimeError) as exc:
            raise BackendError(f"perceptual weights do not fit VGG19: {str(exc).splitlines()[0]}", where) from None
    return features


def _mobilenet_layers(state: dict[str, torch.Tensor] | None, where: str, depth: int) -> nn.Sequential:
    """torchvision MobileNetV2's ``features`` (0..18); ``state`` its torchvision state dict."""
    net = mobilenet.mobilenet_v2()
    if state is not None:
        _strictly(mobilenet.load_checkpoint, net, state, where)
    return net.features[:depth]


def _lite0_layers(state: dict[str, torch.Tensor] | None, where: str, depth: int) -> nn.Sequential:
    """EfficientNet-Lite0's stem and MBConv blocks; ``state`` a wheel checkpoint or dfk's naming."""
    net = efficientnet_lite.EfficientNetLite(LITE0)
    if state is not None:
        _strictly(efficientnet_lite.load_checkpoint, net, state, where, LITE0)
    return nn.Sequential(net.stem, *net.blocks)[:depth]


def _strictly(load: Callable[..., None], net: nn.Module, state: dict[str, torch.Tensor], where: str,
              *args: str) -> None:
    """``load`` (a backbone's strict loader) with its mismatch reported as a perceptual-weights error."""
    try:
        load(net, state, where, *args)
    except ConfigError as exc:
        raise BackendError(f"perceptual {exc.message.removeprefix('model.')}", where) from None


# Taps at 64 px input: MobileNetV2 features 1/3/6/13 at 32/16/8/4 px (16/24/32/96 channels);
# EfficientNet-Lite0 blocks 0/2/4/10 at 32/16/8/4 px (16/24/40/112 channels).
NETWORKS: dict[str, FeatureNetwork] = {
    "mobilenet_v2": FeatureNetwork({f"features.{i}": i for i in range(19)},
                                   ("features.1", "features.3", "features.6", "features.13"),
                                   IMAGENET_MEAN, IMAGENET_STD, _mobilenet_layers, "mobilenet_v2"),
    LITE0: FeatureNetwork({"stem": 0, **{f"blocks.{i}": i + 1 for i in range(16)}},
                          ("blocks.0", "blocks.2", "blocks.4", "blocks.10"),
                          (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _lite0_layers, LITE0),
    "vgg19": FeatureNetwork(VGG_TAPS, tuple(VGG_TAPS), IMAGENET_MEAN, IMAGENET_STD, _vgg19_layers, None),
}


class PerceptualLoss(nn.Module):
    """LPIPS-style distance (``normalised_distance``, averaged over the tapped layers) between the
    features of a frozen backbone for two images in [0, 1]; no learned weights.

    The backbone stays in eval mode and never gets gradients; gradients flow to ``pred`` only.
    """

    def __init__(self, features: nn.Sequential, taps: Sequence[int], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        super().__init__()
        self.taps = sorted(set(taps))
        self.features = features[: self.taps[-1] + 1].eval()  # nothing past the deepest tap runs
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

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
        return sum(normalised_distance(g, w) for g, w in zip(got, wanted, strict=True)) / len(self.taps)


def _vgg19_imagenet() -> dict[str, torch.Tensor]:
    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except (OSError, RuntimeError) as exc:
        raise BackendError(
            f"cannot get the VGG19 ImageNet weights for the perceptual loss ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no network?'}). Download "
            f"{VGG19_Weights.IMAGENET1K_V1.url} on a connected machine and pass "
            "--set perceptual.weights=PATH, use --set perceptual.network=mobilenet_v2 (offline), "
            "or turn the term off with --set loss.perceptual=0", "perceptual.weights") from None


def _state_dict_from(network: str, weights: str) -> dict[str, torch.Tensor] | None:
    """The state dict that ``weights`` (imagenet | random | path) names for ``network``; None for random."""
    if weights == "random":
        return None
    wheel_name = NETWORKS[network].wheel
    if weights == "imagenet" and wheel_name is None:
        return _vgg19_imagenet()
    if weights == "imagenet":
        wheel = WHEELS[wheel_name]
        try:
            return wheel.state_dict()
        except CheckpointError:
            raise BackendError(
                f"the perceptual loss (perceptual.network {network}) needs the weights package "
                f"{wheel.package}, which is not installed: {wheel.install}; or --set loss.perceptual=0",
                wheel.package) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackendError(f"perceptual weights file not found; give imagenet, random or a path to a {network} "
                           "state dict (or --set loss.perceptual=0)", str(path))
    try:
        return load_weights(path)
    except CheckpointError as exc:
        raise BackendError(f"cannot read perceptual weights: {exc.message}", str(path)) from None


def load_perceptual(network: str, weights: str, layers: Sequence[str], device: torch.device) -> PerceptualLoss:
    """Build the frozen perceptual backbone ``network`` (a key of ``NETWORKS``) with ``weights``:
    ``imagenet`` (MobileNetV2 and EfficientNet-Lite0 from their PyPI wheels, offline; VGG19 from
    torchvision's download), ``random`` or a state-dict file. ``layers`` empty: the network's
    default taps. Raises ``BackendError`` with instructions when the weights cannot be had.
    """
    entry = NETWORKS[network]
    taps = [entry.taps[name] for name in (layers or entry.default)]
    features = entry.layers(_state_dict_from(network, weights), weights, max(taps) + 1)
    return PerceptualLoss(features, taps, entry.mean, entry.std).to(device)
