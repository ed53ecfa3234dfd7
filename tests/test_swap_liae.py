"""``model.arch: liae``: one encoder, a shared and an A-only inter block, one decoder; trains through
``dfk train-swap`` and converts through ``dfk convert`` like the two-decoder model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.media.video import VideoReader
from deepfake_cli.swap import load_swap_model
from deepfake_cli.swap.data import load_faces
from deepfake_cli.swap.models import SIDES, LiaeNet
from deepfake_cli.swap.train import apply_init, read_init_source, swap_config
from deepfake_cli.swap.trainer import SwapTrainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(size=32, encoder_widths=(8, 16, 32), bottleneck=16, latent_channels=16, upscale_channels=16,
            decoder_widths=(16, 8))


@pytest.fixture(scope="module")
def tiny_liae(tmp_path_factory: pytest.TempPathFactory, faces_a: Path, faces_b: Path) -> Path:
    """A tiny LIAE model folder trained 4 steps."""
    from deepfake_cli.swap import swap_config, train_swap

    model_dir = tmp_path_factory.mktemp("liae")
    config = swap_config(model_dir, "tiny", overrides=["model.arch=liae", "train.iterations=4",
                                                       "train.save_every=4", "train.preview_every=4"])
    train_swap(faces_a, faces_b, model_dir, config, device="cpu", seed=0, progress=False)
    return model_dir


def _perturbed(net: LiaeNet, module: torch.nn.Module) -> LiaeNet:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
    return net


def test_the_swap_to_b_reads_only_the_shared_inter_code_and_a_reads_its_own() -> None:
    torch.manual_seed(0)
    net = LiaeNet(**TINY, mask=True).eval()
    faces = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        swap, recon_a = net(faces, "b"), net(faces, "a")
        _perturbed(net, net.inter_a)
        swap_after, recon_a_after = net(faces, "b"), net(faces, "a")
    assert all(torch.equal(x, y) for x, y in zip(swap, swap_after))  # A->B never touches inter_a
    assert not torch.allclose(recon_a[0], recon_a_after[0])  # A's reconstruction does
    assert swap[0].shape == (4, 3, 32, 32) and swap[1].shape == (4, 1, 32, 32)


def test_the_one_call_training_forward_equals_decoding_each_identity() -> None:
    torch.manual_seed(0)
    net = LiaeNet(**TINY).eval()
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        parts = net(torch.cat([a, b]), SIDES)
        separately = (net(a, "a"), net(b, "b"))
    for (rgb, mask), (expected, _) in zip(parts, separately, strict=True):
        assert mask is None and torch.allclose(rgb, expected, atol=1e-6)


def test_every_weight_gets_a_gradient_in_one_training_forward() -> None:
    """DistributedDataParallel (without unused-parameter search) needs every weight used per step
    (two ranks training it: tests/test_distributed.py)."""
    torch.manual_seed(0)
    net = LiaeNet(**TINY, mask=True)
    parts = net(torch.rand(4, 3, 32, 32), SIDES)
    sum(rgb.mean() + mask.mean() for rgb, mask in parts).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("preset", ["tiny", "tiny-gan"])
def test_a_tiny_liae_trains_and_converts_a_video(preset: str, run_dfk, faces_a: Path, faces_b: Path,
                                                 clip_a: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "liae"
    result = run_dfk("-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--preset", preset,
                     "--iterations", "12", "--save-every", "12", "--preview-every", "12",
                     "--set", "model.arch=liae")
    assert result.code == 0, result
    model = load_swap_model(model_dir, device="cpu")
    assert isinstance(model.net, LiaeNet) and model.step == 12
    assert (model.kind == "gan") == (preset == "tiny-gan")
    assert (model_dir / "previews" / "latest.png").is_file()
    # resuming with another architecture is refused, the run left as it was
    changed = run_dfk("-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--iterations", "14",
                      "--set", "model.arch=df")
    assert changed.code != 0 and "model.arch" in changed.err
    out = tmp_path / "swapped.mp4"
    converted = run_dfk("-q", "convert", clip_a, "-o", out, "-m", model_dir, "--device", "cpu")
    assert converted.code == 0, converted
    source, swapped = np.stack(list(VideoReader(clip_a))), np.stack(list(VideoReader(out)))
    assert swapped.shape == source.shape
    assert np.abs(swapped.astype(int) - source).mean() > 0.5  # the faces were replaced


def test_an_encoder_init_takes_only_the_conv_encoder_of_a_liae_model(tiny_liae: Path, faces_a: Path, faces_b: Path,
                                                                    tmp_path: Path) -> None:

    config = swap_config(tmp_path / "new", "tiny", overrides=["model.arch=liae"])
    faces = {side: load_faces(folder, config.model.size) for side, folder in zip(SIDES, (faces_a, faces_b))}
    trainer = SwapTrainer(config, faces, torch.device("cpu"), seed=5)
    fresh = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    apply_init(trainer, read_init_source(tiny_liae, "encoder", config))
    source = torch.load(tiny_liae / "model.pt", weights_only=True)["generator"]
    for key, value in trainer.generator.state_dict().items():
        expected = source[key] if key.startswith("encoder.") else fresh[key]
        assert torch.equal(value, expected), key
