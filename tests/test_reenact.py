"""Reenactment: the landmark warp baseline and `dfk reenact` end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.faces import create_backend
from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.faces.identity import landmarks_face
from deepfake_cli.media.images import write_image
from deepfake_cli.media.provenance import stamp_watermark
from deepfake_cli.media.synthetic import load_still, write_clip
from deepfake_cli.media.video import VideoReader, ffmpeg_exe, has_audio
from deepfake_cli.reenact.warp import WarpAnimator, mouth_opening

JAW_AND_LOWER_LIP = list(range(4, 13)) + list(range(55, 60)) + [65, 66, 67]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut still (512x512), whose face is about 115 px."""
    return load_still("astronaut")


@pytest.fixture(scope="module")
def photo_face(photo: np.ndarray) -> DetectedFace:
    return create_backend("offline").detect(photo)[0]


@pytest.fixture(scope="module")
def driving() -> tuple[np.ndarray, DetectedFace]:
    """Grace Hopper's still and face: another person, size and place than the photo's."""
    image = load_still("grace_hopper")
    return image, create_backend("offline").detect(image)[0]


def _opened(face: DetectedFace, by: float) -> DetectedFace:
    """``face`` with its jaw and lower lip lowered by ``by`` inter-ocular distances."""
    points = face.landmarks.copy()
    points[JAW_AND_LOWER_LIP, 1] += by * np.linalg.norm(points[36] - points[45])
    return landmarks_face(points)


def test_zero_motion_gives_the_photo_back_exactly(photo, photo_face, driving) -> None:
    first, face = driving
    animator = WarpAnimator()
    animator.start(photo, photo_face, first, face)
    assert np.array_equal(animator.frame(first, face), photo)
    # another frame whose face has not moved (only its pixels changed) gives the photo back too
    assert np.array_equal(animator.frame(first // 2, landmarks_face(face.landmarks.copy())), photo)


def test_relative_motion_is_scaled_to_the_photos_face(photo, photo_face, driving) -> None:
    first, face = driving
    animator = WarpAnimator()
    animator.start(photo, photo_face, first, face)
    step = np.zeros((68, 2))
    step[8] = [0.0, 10.0]  # the driving chin moves 10 px down
    moved = animator.targets(landmarks_face(face.landmarks + step)) - photo_face.landmarks
    scale = np.ptp(photo_face.landmarks, axis=0).max() / np.ptp(face.landmarks, axis=0).max()
    assert np.abs(np.delete(moved, 8, axis=0)).max() < 1e-6
    assert np.linalg.norm(moved[8]) == pytest.approx(10.0 * scale, rel=0.15)
    assert moved[8, 1] > 0.9 * np.linalg.norm(moved[8])  # still downwards: both faces are upright


def test_an_opening_driving_mouth_opens_the_photos_mouth_and_the_background_stays(photo, photo_face,
                                                                               driving) -> None:
    first, face = driving
    animator = WarpAnimator()
    animator.start(photo, photo_face, first, face)
    out = animator.frame(first, _opened(face, 0.35))
    targets = animator.targets(_opened(face, 0.35))
    assert mouth_opening(targets) > mouth_opening(photo_face.landmarks) + 0.1
    # the middle of the new opening is a dark mouth interior, with teeth below the upper lip
    middle = np.round((targets[62] + targets[66]) / 2).astype(int)
    teeth = np.round(targets[62] + [0, 3]).astype(int)

    def patch(image: np.ndarray, at: np.ndarray) -> float:
        return float(image[at[1] - 2:at[1] + 3, at[0] - 2:at[0] + 3].mean())

    assert patch(out, middle) < 0.4 * patch(photo, middle)
    assert patch(out, teeth) > 2.5 * patch(out, middle)
    # the chin went down with the driving jaw
    chin = np.round(targets[8]).astype(int)
    assert np.abs(out[chin[1] - 3:chin[1] + 3, chin[0] - 3:chin[0] + 3].astype(int)
                  - photo[chin[1] - 3:chin[1] + 3, chin[0] - 3:chin[0] + 3]).mean() > 5
    # far from the face (the flag on the left, the shuttle on the right) nothing moved
    assert np.array_equal(out[:, :60], photo[:, :60]) and np.array_equal(out[:, 400:], photo[:, 400:])
    assert np.array_equal(out[400:], photo[400:])


def test_absolute_motion_gives_the_photo_the_driving_faces_shape(photo, photo_face, driving) -> None:
    first, face = driving
    animator = WarpAnimator(relative=False)
    animator.start(photo, photo_face, first, face)
    targets = animator.targets(face)
    # the driving face aligned onto the photo's: same place and size, not the same points
    assert np.linalg.norm(targets.mean(axis=0) - photo_face.landmarks.mean(axis=0)) < 2.0
    assert np.abs(targets - photo_face.landmarks).max() > 3.0


# --- dfk reenact end to end --------------------------------------------------------------------


def _mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grace Hopper's still as a PNG (512x600): a photo of someone other than clip_a's astronaut."""
    path = tmp_path_factory.mktemp("photo") / "hopper.png"
    write_image(path, load_still("grace_hopper"))
    return path


def test_cli_writes_the_driving_frames_with_audio_and_the_synthetic_label(run_dfk, tmp_path: Path, photo_file: Path,
                                                                          clip_a: Path) -> None:
    out = tmp_path / "hopper_talks.mp4"
    result = run_dfk("-q", "reenact", photo_file, clip_a, "-o", out, "--watermark")
    assert result.code == 0, result
    reader, driving = VideoReader(out), VideoReader(clip_a)
    frames = list(reader)
    assert len(frames) == sum(1 for _ in driving) == 30
    assert frames[0].shape == load_still("grace_hopper").shape
    assert abs(reader.info.fps - driving.info.fps) < 1e-3
    assert has_audio(out)
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True)
    assert "Synthetic media (deepfake)" in probe.stderr and "reenacted" in probe.stderr
    # the visible label is in the bottom-left corner (far from the face, so otherwise the photo's)
    photo = load_still("grace_hopper")
    stamped = photo.copy()
    stamp_watermark(stamped)
    corner = (slice(-30, None), slice(0, 200))
    assert _mean_error(frames[5][corner], stamped[corner]) < 0.3 * _mean_error(frames[5][corner], photo[corner])
    # the photo's face moves with the driving face
    assert np.abs(frames[8].astype(int) - frames[0]).mean() > 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["hopper_talks.mp4"]


def test_cli_with_a_still_driving_video_gives_the_photo_back(run_dfk, tmp_path: Path, photo_file: Path) -> None:
    driving = write_clip(tmp_path / "still.mp4", [cv2.resize(load_still("astronaut"), (320, 320))] * 6)
    out = tmp_path / "out.mkv"  # lossless FFV1, so the comparison sees the warp, not the encoder
    result = run_dfk("-q", "reenact", photo_file, driving, "-o", out, "--codec", "ffv1")
    assert result.code == 0, result
    photo = load_still("grace_hopper")
    frames = list(VideoReader(out))
    assert len(frames) == 6
    for frame in frames:
        assert np.abs(frame.astype(int) - photo).max() <= 1


@pytest.mark.parametrize("case", ["photo without a face", "video without a face first", "unreadable video",
                                  "missing photo", "text output", "absolute with a model"])
def test_bad_inputs_give_one_error_line_and_no_output(run_dfk, tmp_path: Path, photo_file: Path, clip_a: Path,
                                                     case: str) -> None:
    photo, driving, out, extra = photo_file, clip_a, tmp_path / "out" / "out.mp4", []
    if case == "photo without a face":
        photo = tmp_path / "wall.png"
        write_image(photo, np.full((200, 200, 3), 128, np.uint8))
    elif case == "video without a face first":
        blank = [np.full((240, 320, 3), 90, np.uint8)] * 3
        driving = write_clip(tmp_path / "blank_first.mp4", blank + [load_still("astronaut")[:240, 60:380]] * 3)
    elif case == "unreadable video":
        driving = tmp_path / "broken.mp4"
        driving.write_bytes(b"not a video at all" * 100)
    elif case == "missing photo":
        photo = tmp_path / "nobody.jpg"
    elif case == "text output":
        out = tmp_path / "out" / "out.txt"
    else:
        extra = ["--absolute", "-m", tmp_path]
    result = run_dfk("-q", "reenact", photo, driving, "-o", out, *extra)
    assert result.code != 0
    lines = _error_lines(result.err)
    assert len(lines) == 1 and "Traceback" not in result.err, result
    expected = {"photo without a face": "no face found in the photo",
                "video without a face first": "no face found in the driving video's first frame",
                "unreadable video": "cannot open video", "missing photo": "photo not found",
                "text output": "must be a video file",
                "absolute with a model": "--absolute works with the warp baseline only"}[case]
    assert expected in lines[0]
    assert not out.parent.exists() or not any(out.parent.iterdir())


class _NegativeAnimator:
    """A stand-in learned model: every frame is the photo's negative."""

    def start(self, photo, photo_face, first, first_face) -> None:
        self.photo = photo

    def frame(self, driving, face) -> np.ndarray:
        return 255 - self.photo


def test_cli_uses_the_learned_model_only_when_given(run_dfk, monkeypatch, tmp_path: Path, photo_file: Path,
                                                   clip_a: Path) -> None:
    import sys
    import types

    calls: list[Path] = []
    learned = types.ModuleType("deepfake_cli.reenact.learned")

    def load_animator(model_dir: Path, device) -> _NegativeAnimator:
        calls.append(model_dir)
        return _NegativeAnimator()

    learned.load_animator = load_animator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deepfake_cli.reenact.learned", learned)
    assert run_dfk("-q", "reenact", photo_file, clip_a, "-o", tmp_path / "warp.mp4").code == 0
    assert calls == []
    model = tmp_path / "model"
    model.mkdir()
    result = run_dfk("-q", "reenact", photo_file, clip_a, "-o", tmp_path / "learned.mp4", "-m", model)
    assert result.code == 0, result
    assert calls == [model]
    frame = next(iter(VideoReader(tmp_path / "learned.mp4")))
    assert _mean_error(frame, 255 - load_still("grace_hopper")) < 3.0
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "learned.mp4")], capture_output=True,
                           text=True)
    assert "with model 'model'" in probe.stderr
