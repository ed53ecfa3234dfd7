"""The learned reenactment model: shapes, train-reenact on the tiny preset, resume, the animator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.errors import CheckpointError
from deepfake_cli.faces.align import template_points
from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.media.synthetic import Clip
from deepfake_cli.reenact.data import crop_sequence
from deepfake_cli.reenact.learned import load_animator
from deepfake_cli.reenact.model import ReenactNet, coordinate_grid, relative_keypoints, warp
from deepfake_cli.reenact.schema import DataConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net() -> ReenactNet:
    torch.manual_seed(0)
    return ReenactNet(keypoints=4, kp_widths=(8, 16), motion_widths=(8, 16), generator_widths=(8, 16),
                      residual_blocks=1, motion_scale=0.5).eval()


def test_model_outputs_have_the_shapes_the_trainer_and_animator_use() -> None:
    net = tiny_net()
    source, driving = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(source, driving)
    assert out["prediction"].shape == (2, 3, 32, 32)
    assert float(out["prediction"].min()) >= 0 and float(out["prediction"].max()) <= 1
    assert out["flow"].shape == (2, 16, 16, 2) and out["occlusion"].shape == (2, 1, 16, 16)
    assert out["kp_driving"].shape == (2, 4, 2) and out["jacobian_driving"].shape == (2, 4, 2, 2)
    assert float(out["kp_driving"].abs().max()) <= 1  # soft-argmax stays inside the image


@pytest.mark.parametrize("preset", ["tiny", "cpu", "gpu"])
def test_every_preset_builds_a_model_that_renders_at_its_crop_size(preset: str, tmp_path: Path) -> None:
    from deepfake_cli.reenact.store import build_net
    from deepfake_cli.reenact.train import reenact_config

    config = reenact_config(tmp_path, preset)
    size = config.model.size
    with torch.no_grad():
        out = build_net(config.model).eval()(torch.rand(1, 3, size, size), torch.rand(1, 3, size, size))
    assert out["prediction"].shape == (1, 3, size, size)
    assert out["kp_driving"].shape == (1, config.model.keypoints, 2)


def test_equal_keypoints_give_the_identity_flow_and_relative_motion_of_zero_changes_nothing() -> None:
    net = tiny_net()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        kp = net.keypoints(image)
        other = net.keypoints(torch.rand(1, 3, 32, 32))
        moved = relative_keypoints(kp, other, other)  # the driving frame is the first frame
        flow = net.motion(image, kp, moved)["flow"]
    assert torch.allclose(moved["value"], kp["value"], atol=1e-6)
    assert torch.allclose(flow, coordinate_grid(16, 16, flow)[None], atol=1e-5)
    assert torch.allclose(warp(image, flow), image, atol=1e-4)


def test_crops_start_a_new_shot_when_the_face_jumps() -> None:
    landmarks = template_points(100, 1.0) + 60  # a face ~100 px wide; the 32 px crop shows ~200 px
    shifts = [0, 1, 2, 60, 61]  # px: 1-2 px stay within data.drift (15% of the crop), 60 px do not
    faces = iter(DetectedFace(np.zeros(4), 1.0, landmarks + s) for s in shifts)
    frames = [np.zeros((240, 320, 3), np.uint8)] * len(shifts)
    crops = crop_sequence(frames, lambda frame: next(faces), 32, DataConfig())
    assert crops.images.shape == (5, 32, 32, 3)
    assert crops.segments.tolist() == [0, 0, 0, 1, 1]


@pytest.fixture(scope="module")
def crop_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One face-crop cache for the module: clip A's faces are found once."""
    return tmp_path_factory.mktemp("reenact_cache")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, clip_a: Path, crop_cache: Path) -> Path:
    """A tiny-preset model trained 20 steps on clip A."""
    from deepfake_cli.reenact.train import reenact_config, train_reenact

    model = tmp_path_factory.mktemp("reenact") / "model"
    train_reenact([clip_a], model, reenact_config(model, "tiny"), device="cpu", cache_dir=crop_cache)
    return model


def test_tiny_preset_trains_through_the_cli_with_previews_and_loss_plot_and_resumes(
        clip_a: Path, crop_cache: Path, run_dfk, tmp_path: Path) -> None:
    model = tmp_path / "model"
    first = run_dfk("train-reenact", clip_a, "-o", model, "--preset", "tiny", "--cache", crop_cache)
    assert first.code == 0 and "trained steps 0->20" in first.out, first
    assert (model / "previews" / "step_000010.png").is_file() and (model / "previews" / "step_000020.png").is_file()
    assert (model / "loss.png").stat().st_size > 1000
    rows = list(csv.DictReader((model / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert float(rows[-1]["l1"]) < float(rows[0]["l1"])  # it learns

    resumed = run_dfk("train-reenact", clip_a, "-o", model, "--iterations", "25", "--cache", crop_cache)
    assert resumed.code == 0 and "trained steps 20->25" in resumed.out, resumed
    assert [int(r["step"]) for r in csv.DictReader((model / "log.csv").open())] == [5, 10, 15, 20, 25]
    again = run_dfk("train-reenact", clip_a, "-o", model, "--cache", crop_cache)
    assert again.code == 0 and "model already at step 25; nothing to train" in again.out, again
    other = run_dfk("train-reenact", clip_a, "-o", model, "--set", "model.keypoints=3", "--cache", crop_cache)
    assert other.code != 0 and other.err.startswith("error: ") and other.err.count("\n") == 1, other
    assert "model.keypoints 5 -> 3" in other.err


def test_a_driving_frame_equal_to_the_first_gives_the_photo_back(tiny_model: Path,
                                                                  clip_a_data: Clip) -> None:
    from deepfake_cli.faces import create_backend

    model = tiny_model
    backend = create_backend("offline", detector_threads=1)
    photo, later = clip_a_data.frames[0], clip_a_data.frames[8]
    face, later_face = backend.detect(photo)[0], backend.detect(later)[0]
    animator = load_animator(model, torch.device("cpu"))
    animator.start(photo, face, photo, face)
    still = animator.frame(photo, face).astype(np.int16)
    moved = animator.frame(later, later_face).astype(np.int16)
    assert still.shape == moved.shape == photo.shape
    error = np.abs(still - photo)
    # Zero motion leaves only the round trip photo -> face crop -> photo (bilinear/area down, bicubic
    # back): a fraction of a grey level on average, a few levels at most at sharp edges.
    assert error.mean() < 1.0 and np.percentile(error, 99) <= 6
    assert np.abs(moved - photo).mean() > 5 * error.mean()  # a moved driving face does move the photo


def test_a_folder_that_is_not_a_model_gives_one_error_line(tmp_path: Path, tiny_model: Path,
                                                           run_dfk) -> None:
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_animator(tmp_path / "missing", torch.device("cpu"))
    with pytest.raises(CheckpointError, match="not a train-reenact model folder"):
        load_animator(tmp_path, torch.device("cpu"))
    model = tiny_model
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((model / "config.yaml").read_bytes())
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as caught:
        load_animator(broken, torch.device("cpu"))
    assert "\n" not in str(caught.value)
    missing = run_dfk("train-reenact", tmp_path / "nope.mp4", "-o", tmp_path / "m")
    assert missing.code != 0 and missing.err.startswith("error: no such video") and missing.err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_gloo_ranks_train_one_model_that_only_rank_0_writes(clip_a: Path, crop_cache: Path, tiny_model: Path,
                                                                tmp_path: Path) -> None:
    from tests.test_distributed import torchrun

    model = tmp_path / "model"
    done = torchrun("-m", "deepfake_cli", "-q", "--device", "cpu", "train-reenact", clip_a, "-o", model,
                    "--preset", "tiny", "--cache", crop_cache)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [int(r["step"]) for r in csv.DictReader((model / "log.csv").open())] == [5, 10, 15, 20]
    state = json.loads((model / "state.json").read_text())
    assert state["step"] == 20 and state["world_size"] == 2
    assert load_animator(model, torch.device("cpu")).net.training is False  # loads as any model does


def test_dfk_reenact_with_a_trained_model_animates_the_photo(tiny_model: Path, clip_a: Path, clip_a_data: Clip,
                                                             run_dfk, tmp_path: Path) -> None:
    from deepfake_cli.media.images import write_image
    from deepfake_cli.media.video import VideoReader

    photo = tmp_path / "photo.png"
    write_image(photo, clip_a_data.frames[0])
    result = run_dfk("-q", "reenact", photo, clip_a, "-o", tmp_path / "out.mp4", "-m", tiny_model, "--device", "cpu")
    assert result.code == 0, result
    frames = list(VideoReader(tmp_path / "out.mp4"))
    assert len(frames) == len(clip_a_data.frames) and frames[0].shape == clip_a_data.frames[0].shape
    first = np.abs(frames[0].astype(np.int16) - clip_a_data.frames[0]).mean()
    assert first < 3.0  # the driving video's first frame gives the photo (and H.264 at crf 18)
    assert np.abs(frames[15].astype(np.int16) - clip_a_data.frames[0]).mean() > 2 * first
