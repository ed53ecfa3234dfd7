"""Canny preprocessing with automatic thresholds and sequence sampling/balancing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.detect.preprocess import FrameStore, auto_canny, prepare_frame, to_tensor
from deepfake_cli.detect.sequences import (
    eval_starts, per_video_counts, positions, span, train_starts, training_sequences,
)
from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.media.images import write_image


def textured(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)


def test_auto_canny_thresholds_follow_the_median() -> None:
    gray = cv2.cvtColor(textured(), cv2.COLOR_RGB2GRAY)
    median = float(np.median(gray))
    expected = cv2.Canny(gray, int(0.67 * median), int(min(255, 1.33 * median)))
    assert np.array_equal(auto_canny(gray, 0.33), expected)
    # Scaling brightness moves the thresholds with it: a darker copy keeps edges.
    assert auto_canny((gray * 0.5).astype(np.uint8)).sum() > 0


def test_blurring_a_face_removes_edges() -> None:
    image = textured(1, 128)
    blurred = cv2.GaussianBlur(image, (0, 0), 4)
    sharp = prepare_frame(image, 32, "canny").astype(float).mean()
    assert prepare_frame(blurred, 32, "canny").astype(float).mean() < 0.5 * sharp


@pytest.mark.parametrize("mode,channels", [("canny", 1), ("rgb", 3), ("rgb+canny", 4)])
def test_input_modes(mode: str, channels: int) -> None:
    frame = prepare_frame(textured(), 24, mode)
    assert frame.shape == (channels, 24, 24) and frame.dtype == np.uint8
    tensor = to_tensor(frame[None])
    assert tensor.min() >= -1 and tensor.max() <= 1


def test_frame_store_reads_each_file_once(tmp_path: Path) -> None:
    write_image(tmp_path / "f.png", textured())
    store = FrameStore(16, "canny", 0.33)
    first = store.get(tmp_path / "f.png")
    (tmp_path / "f.png").unlink()
    assert store.sequence([tmp_path / "f.png"] * 3).shape == (3, 1, 16, 16)
    assert store.get(tmp_path / "f.png") is first


def test_sequence_positions_stride_and_padding() -> None:
    assert span(5, 2) == 9
    assert positions(20, 3, 5, 2) == (3, 5, 7, 9, 11)
    assert positions(3, 0, 5, 1) == (0, 1, 2, 2, 2)  # short track: last face repeats
    assert positions(1, 0, 5, 1) == (0,) * 5  # an image: a still sequence


def test_evaluation_windows_tile_the_whole_track() -> None:
    assert eval_starts(20, 5, 1) == [0, 5, 10, 15]
    assert eval_starts(22, 5, 1) == [0, 5, 10, 15, 17]  # the last window ends on the last face
    assert eval_starts(3, 5, 1) == [0]
    assert eval_starts(100, 5, 1, limit=3) == [0, 50, 95]


def test_training_windows_spread_then_repeat() -> None:
    assert train_starts(20, 5, 1, 4) == [0, 5, 10, 15]
    assert train_starts(6, 5, 1, 5) == [0, 1, 0, 1, 0]


def test_minority_class_gets_more_sequences_per_video() -> None:
    assert per_video_counts([0, 1, 1, 1, 1], 2) == {0: 8, 1: 2}
    tracks = [FaceTrack(f"v{i}", "s", list(range(30)), [Path(f"{i}_{k}.png") for k in range(30)],
                        [[0, 0, 1, 1]] * 30, label=int(i > 0), group=f"v{i}") for i in range(5)]
    refs = training_sequences(tracks, list(range(5)), frames=5, stride=1, base=3)
    per_class = Counter(tracks[r.track].label for r in refs)
    assert per_class[0] == per_class[1] == 12
