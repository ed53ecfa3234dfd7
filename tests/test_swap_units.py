"""Swap building blocks: networks, losses, augmentation, face loading, config checks."""

from __future__ import annotations

import logging
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_cli import losses as image_losses
from deepfake_cli.errors import BackendError, ConfigError, InputError
from deepfake_cli.faces.align import template_points
from deepfake_cli.swap import losses
from deepfake_cli.swap.augment import Augmenter
from deepfake_cli.swap.data import load_faces, region_weights
from deepfake_cli.swap.models import SwapNet
from deepfake_cli.swap.sagan import Discriminator, SelfAttention
from deepfake_cli.swap.schema import AugmentConfig, LossConfig, ScheduleEntry, loss_weights
from deepfake_cli.swap.train import swap_config

TINY = dict(size=32, encoder_widths=(8, 16, 32), bottleneck=16, latent_channels=16, upscale_channels=16,
            decoder_widths=(16, 8))


def test_original_architecture_matches_the_classic_model() -> None:
    with torch.device("meta"):
        net = SwapNet()
    convs = [m for m in net.encoder.convs.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 256, 512, 1024]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    dense = [m for m in net.encoder.dense if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(4 * 4 * 1024, 1024), (1024, 4 * 4 * 1024)]
    decoder = net.decoders["a"]
    assert [m.out_channels // 4 for m in decoder.upscales.modules() if isinstance(m, nn.Conv2d)] == [256, 128, 64]
    assert decoder.rgb.kernel_size == (5, 5) and decoder.mask is None
    params = sum(p.numel() for p in net.parameters())
    assert 80e6 < params < 84e6
    assert params * 4 <= 350e6  # fp32 weights of model.pt stay under the 350 MB budget


def test_generator_shapes_ranges_and_mask() -> None:
    torch.manual_seed(0)
    face = torch.rand(2, 3, 32, 32)
    rgb, mask = SwapNet(**TINY)(face, "a")
    assert rgb.shape == (2, 3, 32, 32) and mask is None and 0 <= rgb.min() and rgb.max() <= 1
    gan = SwapNet(**TINY, attention_at=(8, 16), mask=True)
    assert sum(isinstance(m, SelfAttention) for m in gan.modules()) == 4  # encoder at 16 and 8, decoders at 16
    rgb, mask = gan(face, "b")
    assert mask is not None and mask.shape == (2, 1, 32, 32) and 0 <= mask.min() and mask.max() <= 1


def test_fresh_self_attention_is_the_identity_and_learns_a_gate() -> None:
    block = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_discriminator_uses_spectral_norm_and_attention() -> None:
    disc = Discriminator(32, (16, 32), attention_at=(8,))
    logits = disc(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, 1, 8, 8)
    assert any(isinstance(m, SelfAttention) for m in disc.modules())
    assert any("parametrizations.weight.original" in name for name in disc.state_dict())


def test_weighted_l1_and_edge_loss() -> None:
    target = torch.zeros(1, 3, 8, 8)
    pred = target.clone()
    pred[..., :4, :] = 1.0
    weight = torch.ones(1, 1, 8, 8)
    assert losses.weighted_l1(pred, target, weight) == pytest.approx(losses.weighted_l1(pred, target).item())
    weight[..., :4, :] = 3.0  # errors in the weighted region count more
    assert losses.weighted_l1(pred, target, weight) > losses.weighted_l1(pred, target)
    assert losses.edge_loss(target, target) == 0
    assert losses.edge_loss(pred, target) > 0
    assert losses.mask_total_variation(torch.ones(1, 1, 8, 8)) == 0


@pytest.mark.parametrize("scales", [1, 3])
def test_ssim_is_one_for_identical_images_and_falls_with_damage(scales: int) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 64, 64, generator=generator)
    noisy = (image + 0.2 * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(image, 3, 1, 1)
    assert losses.ssim(image, image, scales=scales).item() == pytest.approx(1.0, abs=1e-5)
    assert losses.dssim_loss(image, image, scales=scales).item() == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < losses.ssim(image, noisy, scales=scales).item() < 0.9
    assert losses.ssim(image, blurred, scales=scales).item() < 0.95


@pytest.mark.parametrize("scales", [1, 3])
def test_dssim_gradients_are_finite_even_on_flat_images(scales: int) -> None:
    target = torch.full((2, 3, 32, 32), 0.5)
    for pred in (torch.zeros(2, 3, 32, 32), torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))):
        pred.requires_grad_(True)
        weight = torch.ones(2, 1, 32, 32)
        losses.dssim_loss(pred, target, weight, scales).backward()
        assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())


def test_ssim_weight_map_ignores_unweighted_pixels() -> None:
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    damaged = image.clone()
    damaged[..., :, 24:] = 0.0
    weight = torch.zeros(1, 1, 32, 32)
    weight[..., :, :8] = 1.0  # far (> one 11 px window) from the damage
    assert losses.ssim(image, damaged, weight).item() == pytest.approx(1.0, abs=1e-4)
    assert losses.ssim(image, damaged).item() < 0.9


def test_adversarial_losses() -> None:
    real, fake = torch.ones(4), torch.zeros(4)
    assert losses.discriminator_loss(real, fake, "lsgan") == 0  # a perfect discriminator
    assert losses.generator_adversarial_loss(fake, "lsgan") == 1
    assert losses.discriminator_loss(real, -real, "hinge") == 0
    assert losses.generator_adversarial_loss(real, "hinge") == -1


def test_perceptual_loss_random_and_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    random = losses.load_perceptual("vgg19", "random", ["relu1_2", "relu2_2"], torch.device("cpu"))
    image = torch.rand(1, 3, 32, 32)
    assert random(image, image) == 0 and random(image, image.flip(-1)) > 0
    assert not any(p.requires_grad for p in random.parameters())
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in random.features.state_dict().items()}, path)
    loaded = losses.load_perceptual("vgg19", str(path), ["relu1_2", "relu2_2"], torch.device("cpu"))
    assert torch.equal(loaded.features[0].weight, random.features[0].weight)
    with pytest.raises(BackendError, match="do not fit"):
        losses.load_perceptual("vgg19", str(path), ["relu4_4"], torch.device("cpu"))


def test_perceptual_weights_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(losses.VGG19_Weights.IMAGENET1K_V1, "get_state_dict", offline)
    with pytest.raises(BackendError) as info:
        losses.load_perceptual("vgg19", "imagenet", ["relu1_2"], torch.device("cpu"))
    assert "perceptual.weights=PATH" in str(info.value) and "loss.perceptual=0" in str(info.value)
    with pytest.raises(BackendError, match="not found"):
        losses.load_perceptual("vgg19", "/no/such/vgg.pth", ["relu1_2"], torch.device("cpu"))


def _augmenter(seed: int = 0, **values: float) -> Augmenter:
    none = dict(rotation=0.0, zoom=0.0, shift=0.0, flip=0.0, warp=0.0, brightness=0.0, contrast=0.0,
                saturation=0.0)
    return Augmenter(AugmentConfig(**{**none, **values}), torch.Generator().manual_seed(seed))


def test_augmentation_without_randomness_returns_the_faces() -> None:
    faces = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    batch = _augmenter()(faces, torch.ones(4, 1, 16, 16))
    expected = faces.float() / 255
    assert torch.allclose(batch.target, expected, atol=1e-5) and torch.allclose(batch.warped, expected, atol=1e-5)
    assert batch.weight is not None and torch.allclose(batch.weight, torch.ones(4, 1, 16, 16))


def test_flip_moves_faces_and_weights_together() -> None:
    faces = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    weight = torch.ones(2, 1, 16, 16)
    weight[..., :4] = 3.0
    batch = _augmenter(flip=1.0)(faces, weight)
    assert torch.allclose(batch.target, faces.float().flip(-1) / 255, atol=1e-5)
    assert batch.weight is not None and torch.allclose(batch.weight, weight.flip(-1), atol=1e-5)


def test_random_warp_distorts_only_the_input_and_is_seeded() -> None:
    faces = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    first = _augmenter(seed=3, warp=0.03, rotation=10.0, brightness=0.1)(faces)
    again = _augmenter(seed=3, warp=0.03, rotation=10.0, brightness=0.1)(faces)
    assert torch.equal(first.warped, again.warped) and torch.equal(first.target, again.target)
    assert (first.warped - first.target).abs().mean() > 0.01
    assert first.weight is None and 0 <= first.warped.min() and first.warped.max() <= 1


def test_loss_schedule() -> None:
    config = LossConfig(adversarial=0.1, schedule=[ScheduleEntry(0, "adversarial", 0.0),
                                                   ScheduleEntry(100, "adversarial", 0.2)])
    assert loss_weights(config, 0)["adversarial"] == 0.0
    assert loss_weights(config, 99)["adversarial"] == 0.0
    assert loss_weights(config, 100)["adversarial"] == 0.2
    assert loss_weights(config, 100)["recon"] == 1.0


def test_region_weights_mark_eyes_and_mouth() -> None:
    points = template_points(64, 0.625)
    weights = region_weights(points, 64, eye=3.0, mouth=2.0)
    eye = points[36:42].mean(axis=0).round().astype(int)
    mouth = points[[51, 57]].mean(axis=0).round().astype(int)
    assert weights[eye[1], eye[0]] == 3.0 and weights[mouth[1], mouth[0]] == 2.0
    assert weights[2, 2] == 1.0 and set(np.unique(weights)) == {1.0, 2.0, 3.0}


def test_background_weight_applies_outside_the_face_only() -> None:
    points = template_points(64, 0.625)
    weights = region_weights(points, 64, eye=3.0, mouth=2.0, background=0.2)
    nose = points[30].round().astype(int)
    assert weights[2, 2] == pytest.approx(0.2) and weights[nose[1], nose[0]] == 1.0
    assert np.allclose(np.unique(weights), [0.2, 1.0, 2.0, 3.0])


def test_learning_rate_warms_up_then_follows_the_cosine(faces_a: Path, tmp_path: Path) -> None:
    from deepfake_cli.swap.trainer import SwapTrainer

    config = swap_config(tmp_path, "tiny", overrides=["train.warmup=10", "train.lr_schedule=cosine",
                                                      "train.iterations=110", "train.lr_min=0.1"])
    faces = load_faces(faces_a, 32)
    trainer = SwapTrainer(config, {"a": faces, "b": faces}, torch.device("cpu"), seed=0)
    factors = [trainer.lr_factor(step) for step in (0, 4, 9, 10, 60, 110, 500)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(0.5)
    assert factors[2] == pytest.approx(1.0) and factors[3] == pytest.approx(1.0)
    assert factors[4] == pytest.approx(0.55) and factors[5] == pytest.approx(0.1) == factors[6]
    trainer.set_lr_scale(0.5)  # after a NaN rollback the schedule is scaled, not replaced
    trainer.step(4)
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(config.train.lr * 0.5 * 0.5)


def test_load_faces_with_alignments(faces_a: Path) -> None:
    faces = load_faces(faces_a, 32, device="cpu")
    assert faces.images.dtype == torch.uint8 and faces.images.shape == (len(faces), 3, 32, 32)
    assert faces.weights is not None and faces.weights.dtype == torch.uint8  # region codes (compact store)
    _, weights, hulls = faces.gather(torch.arange(len(faces)))
    assert weights.dtype == torch.float32 and float(weights.max()) == 3.0 and hulls.dtype == torch.uint8
    assert faces.alignments is not None and len(faces) == len(faces.alignments.faces)


def test_load_faces_without_alignments_warns(faces_a: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("deepfake_cli"), "propagate", True)  # the CLI may have turned it off
    for png in sorted(faces_a.glob("*.png"))[:10]:
        shutil.copy(png, tmp_path / png.name)
    faces = load_faces(tmp_path, 32, crop=0.8, device="cpu")
    assert len(faces) == 10 and faces.weights is None
    assert "without eye/mouth" in caplog.text


def test_too_few_or_missing_faces(faces_a: Path, tmp_path: Path) -> None:
    for png in sorted(faces_a.glob("*.png"))[:5]:
        shutil.copy(png, tmp_path / png.name)
    with pytest.raises(InputError, match="at least 8"):
        load_faces(tmp_path, 32)
    with pytest.raises(InputError, match="not found"):
        load_faces(tmp_path / "missing", 32)


@pytest.mark.parametrize("override, message", [
    ("model.size=36", "divisible"),
    ("model.decoder_widths=[8]", "decoder_widths"),
    ("train.lr=0", "train.lr"),
    ("loss.recon=-1", "negative"),
    ("loss.schedule=[{start: 0, term: bogus, weight: 1}]", "term"),
    ("loss.ssim_scales=4", "ssim_scales"),
    ("loss.background=1.5", "background"),
])
def test_invalid_configs_are_config_errors(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        swap_config(tmp_path, "tiny", overrides=[override])


def test_presets_load(tmp_path: Path) -> None:
    kinds = {name: swap_config(tmp_path, name).model for name in ("tiny", "tiny-gan", "original", "gan")}
    assert kinds["tiny"].size <= 64 and kinds["tiny-gan"].kind == "gan"
    assert kinds["original"].size == 64 and kinds["gan"].size == 128 and kinds["gan"].attention_at


def test_ssim_matches_scikit_image() -> None:
    """SSIM against skimage.metrics.structural_similarity with the same settings (Gaussian window,
    sigma 1.5, 11 taps, population covariance, data range 1, channels averaged).

    skimage averages the SSIM map without its 5-pixel border; there dfk's map agrees to 1e-5 (float32
    sums). dfk keeps the border, padded by whole-sample reflection where skimage's filter repeats the
    edge pixel, so the whole-image figure differs from the mean of skimage's full map by < 1e-3."""
    from skimage import data
    from skimage.metrics import structural_similarity
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    astronaut = resize(data.astronaut(), (96, 96), anti_aliasing=True).astype(np.float32)
    coffee = resize(data.coffee(), (96, 96), anti_aliasing=True).astype(np.float32)
    pairs = [(astronaut, np.clip(astronaut + rng.normal(0, 0.08, astronaut.shape), 0, 1).astype(np.float32)),
             (astronaut, coffee), (astronaut, astronaut * 0.7 + 0.1), (coffee, coffee)]
    as_batch = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None]  # noqa: E731
    for x, y in pairs:
        reference, full = structural_similarity(x, y, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False, full=True)
        luminance, contrast_structure = image_losses._ssim_parts(as_batch(x), as_batch(y), 11, 1.5)
        ssim_map = (luminance * contrast_structure)[0].permute(1, 2, 0).numpy()
        assert float(ssim_map[5:-5, 5:-5].mean()) == pytest.approx(float(reference), abs=1e-5)
        assert float(losses.ssim(as_batch(x), as_batch(y))) == pytest.approx(float(full.mean()), abs=1e-3)
