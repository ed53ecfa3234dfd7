"""Whole-face synthesis: the face GAN's networks, ``dfk train-facegan`` (mosaics, log, resume) and
``dfk synth`` (labelled faces, latent-walk clips, bad inputs)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.media.images import read_image, write_image
from deepfake_cli.media.video import VideoReader, ffmpeg_exe
from deepfake_cli.synth.augment import diff_augment
from deepfake_cli.synth.model import Discriminator, Generator
from deepfake_cli.synth.quality import frechet_distance, mean_pairwise_distance
from deepfake_cli.synth.sample import latent_walk
from deepfake_cli.synth.schema import FaceGanConfig, validate

pytestmark = pytest.mark.usefixtures("one_thread")
LABEL = b"Synthetic media (deepfake): a face of nobody"


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of 12 small face-like images (a skin-coloured oval on a dark background)."""
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:32]
    for i in range(12):
        image = np.full((40, 32, 3), 30, np.uint8)
        oval = ((yy - 20) / 15.0) ** 2 + ((xx - 16) / 11.0) ** 2 < 1
        image[oval] = rng.integers(150, 230, 3)
        write_image(folder / f"face_{i}.png", image)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """A tiny face GAN trained 4 steps through the API."""
    from deepfake_cli.synth import facegan_config, train_facegan

    folder = tmp_path_factory.mktemp("tiny_facegan")
    train_facegan([faces_dir], folder, facegan_config(folder, "tiny"), device="cpu")
    return folder


@pytest.mark.parametrize("preset", ["tiny", "cpu", "gpu"])
def test_generator_and_discriminator_shapes_at_each_preset(preset: str) -> None:
    config = validate(load_config(FaceGanConfig, "synth", preset))
    size = config.model.size
    generator = Generator(size, config.model.latent, config.model.g_width)
    discriminator = Discriminator(size, config.model.d_width)
    faces = generator(torch.randn(2, config.model.latent))
    assert faces.shape == (2, 3, size, size)
    assert faces.min() >= -1 and faces.max() <= 1
    assert discriminator(faces).shape == (2,)
    assert {"tiny": 16, "cpu": 64}.get(preset, 128) <= size


def test_gpu_preset_is_larger_and_wider_than_cpu() -> None:
    cpu, gpu = (load_config(FaceGanConfig, "synth", name) for name in ("cpu", "gpu"))
    assert gpu.model.size >= 128 > cpu.model.size
    assert gpu.model.g_width > cpu.model.g_width and gpu.model.d_width > cpu.model.d_width


def _log_steps(model: Path) -> list[int]:
    with (model / "log.csv").open(newline="") as handle:
        return [int(float(row["step"])) for row in csv.DictReader(handle)]


def test_train_facegan_writes_mosaics_at_exactly_the_mosaic_steps(run_dfk, faces_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    result = run_dfk("-q", "train-facegan", faces_dir, "-o", model, "--preset", "tiny", "--iterations", "5",
                     "--mosaic-every", "2")
    assert result.code == 0, result
    previews = sorted(p.name for p in (model / "previews").glob("step_*.png"))
    assert previews == ["step_000002.png", "step_000004.png", "step_000005.png"]  # and the last step
    mosaic = read_image(model / "previews" / "step_000004.png")
    cell = 96 + 2  # 16 px samples shown in 96 px cells with 2 px gaps
    assert mosaic.shape == (6 * cell - 2, 6 * cell - 2, 3)
    assert (model / "loss.png").stat().st_size > 0
    assert _log_steps(model) == [1, 2, 3, 4, 5]


def test_the_same_seed_gives_the_same_mosaic(run_dfk, faces_dir: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run_dfk("-q", "--seed", "3", "train-facegan", faces_dir, "-o", tmp_path / name, "--preset", "tiny",
                       "--iterations", "2").code == 0
    first, second = (read_image(tmp_path / n / "previews" / "step_000002.png") for n in ("a", "b"))
    assert np.array_equal(first, second)
    assert first.std() > 0  # the samples differ from one another


def test_resume_continues_exactly_and_a_finished_run_is_not_retrained(run_dfk, faces_dir: Path,
                                                                      tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_dfk("-q", "train-facegan", faces_dir, "-o", whole, "--preset", "tiny", "--iterations", "6").code == 0
    assert run_dfk("-q", "train-facegan", faces_dir, "-o", split, "--preset", "tiny", "--iterations", "4").code == 0
    again = run_dfk("train-facegan", faces_dir, "-o", split)
    assert again.code == 0 and "already at step 4" in again.out
    resumed = run_dfk("-q", "train-facegan", faces_dir, "-o", split, "--iterations", "6")
    assert resumed.code == 0 and "4->6" in resumed.out
    assert _log_steps(split) == [1, 2, 3, 4, 5, 6]
    assert (split / "previews" / "step_000006.png").is_file()
    a, b = (torch.load(folder / "model.pt", weights_only=True) for folder in (whole, split))
    for key, value in a["generator_ema"].items():
        assert torch.equal(value, b["generator_ema"][key]), key


def test_resume_with_other_settings_is_refused_in_one_line(run_dfk, tiny_model: Path, faces_dir: Path) -> None:
    before = (tiny_model / "checkpoint.json").read_bytes()
    result = run_dfk("train-facegan", faces_dir, "-o", tiny_model, "--preset", "cpu")
    assert result.code != 0
    assert result.err.strip().startswith("error: cannot resume") and len(result.err.strip().splitlines()) == 1
    assert "model.size: 16 -> 64" in result.err
    assert (tiny_model / "checkpoint.json").read_bytes() == before


@pytest.mark.multiprocess
def test_two_ranks_under_torchrun_train_one_folder_that_rank_zero_writes(faces_dir: Path, tmp_path: Path) -> None:
    import test_distributed

    model = tmp_path / "model"
    result = test_distributed.torchrun("-m", "deepfake_cli", "-q", "--device", "cpu", "train-facegan", faces_dir,
                                       "-o", model, "--preset", "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((model / "state.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (model / "previews").glob("step_*.png")) == ["step_000002.png", "step_000004.png"]
    assert _log_steps(model) == [1, 2, 3, 4]  # one log, not one per rank


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_train_facegan_without_faces_fails_in_one_line_and_writes_nothing(run_dfk, tmp_path: Path, make: str) -> None:
    faces = tmp_path / "faces"
    if make == "empty":
        faces.mkdir()
    result = run_dfk("train-facegan", faces, "-o", tmp_path / "model", "--preset", "tiny")
    assert result.code != 0 and result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_synth_writes_n_labelled_faces_and_latent_walk_clips(run_dfk, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_dfk("-q", "synth", "-m", tiny_model, "-n", "5", "-o", out, "--videos", "2", "--frames", "30")
    assert result.code == 0, result
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 5 and all(LABEL in p.read_bytes() for p in pngs)
    assert read_image(pngs[0]).shape == (16, 16, 3)
    clips = sorted(out.glob("*.mp4"))
    assert len(clips) == 2
    frames = list(VideoReader(clips[0]))
    assert len(frames) == 30 and frames[0].shape == (16, 16, 3)
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(clips[0])], capture_output=True, text=True)
    assert "Synthetic media (deepfake)" in probe.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in [*pngs, *clips])  # no temp left


def test_synth_same_seed_same_faces_other_seed_other_faces(run_dfk, tiny_model: Path, tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert run_dfk("-q", "synth", "-m", tiny_model, "-n", "3", "-o", tmp_path / name, "--seed", seed).code == 0
    images = {name: [read_image(p) for p in sorted((tmp_path / name).glob("*.png"))] for name in "abc"}
    assert all(np.array_equal(x, y) for x, y in zip(images["a"], images["b"], strict=True))
    assert not np.array_equal(images["a"][0], images["c"][0])


@pytest.mark.parametrize("case", ["zero", "no_folder", "not_a_model"])
def test_synth_bad_inputs_give_one_error_line_and_no_output(run_dfk, tiny_model: Path, tmp_path: Path,
                                                            case: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    model, count = {"zero": (tiny_model, "0"), "no_folder": (tmp_path / "nope", "2"),
                    "not_a_model": (empty, "2")}[case]
    out = tmp_path / "out"
    result = run_dfk("synth", "-m", model, "-n", count, "-o", out)
    assert result.code != 0 and result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert not out.exists()


def test_latent_walk_starts_on_its_points_and_moves_in_small_steps() -> None:
    points = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    walk = latent_walk(points, 48, per_point=24)
    assert walk.shape == (48, 32)
    assert torch.allclose(walk[0], points[0]) and torch.allclose(walk[24], points[1], atol=1e-5)
    steps = (walk[1:] - walk[:-1]).norm(dim=1)
    assert steps.max() < 0.25 * (points[1] - points[0]).norm()


def test_diff_augment_keeps_shape_and_passes_gradients() -> None:
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    assert diff_augment(x, []) is x
    out = diff_augment(x * 2 - 1, ["color", "translation", "cutout"], torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert (out == 0).float().mean() > 0.2  # cutout zeroes a quarter of each face


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_copy() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 8))
    assert abs(frechet_distance(features, features)) < 1e-8
    shift = np.full(8, 0.5)
    assert frechet_distance(features, features + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)


def test_diversity_is_zero_for_a_collapsed_set_and_the_distance_for_two_faces() -> None:
    assert mean_pairwise_distance(np.ones((10, 4))) == pytest.approx(0.0, abs=1e-6)
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
