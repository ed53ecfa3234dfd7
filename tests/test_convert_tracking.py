"""convert follows the face between full-frame searches: same landmarks, fewer searches, no ghosts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.faces import create_backend
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.media.synthetic import make_clip
from deepfake_cli.faces.follow import DetectingLocator, box_overlap

SOURCE = Path("clip.mp4")


@pytest.fixture(scope="module")
def backend():
    return create_backend("offline", detector_threads=1)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """20 frames of 640x480: large enough that the search window is shrunk."""
    return make_clip("grace_hopper", 20, (640, 480), seed=3).frames


def _run(locator: DetectingLocator, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [locator(SOURCE, index, frame) for index, frame in enumerate(frames)]


def test_following_the_face_gives_the_landmarks_of_full_frame_searches(backend, frames) -> None:
    full, followed = DetectingLocator(backend, redetect=1), DetectingLocator(backend, redetect=10)
    reference, tracked = _run(full, frames), _run(followed, frames)
    errors = [np.linalg.norm(a[0] - b[0], axis=1).mean() / inter_ocular_distance(a[0])
              for a, b in zip(reference, tracked, strict=True)]
    assert max(errors) < 0.05
    assert full.full_searches == 20 and followed.full_searches == 2  # frames 0 and 10


def test_a_face_that_leaves_is_not_followed_and_is_found_again(backend, frames) -> None:
    blank = np.full_like(frames[0], 90)
    moved = np.roll(frames[6], 260, axis=1)  # a cut: the face is now far from where it was
    sequence = frames[:5] + [blank, blank] + [moved] + frames[7:9]
    locator = DetectingLocator(backend, redetect=10)
    found = _run(locator, sequence)
    assert [len(faces) for faces in found] == [1] * 5 + [0, 0] + [1] * 3
    expected = backend.detect(moved)[0].landmarks
    assert np.linalg.norm(found[7][0] - expected, axis=1).mean() < 0.05 * inter_ocular_distance(expected)
    # full searches: frame 0, both blank frames, the moved face and the jump back; frame 9 is followed
    assert locator.full_searches == 5


def test_a_new_source_or_a_skipped_frame_starts_with_a_full_search(backend, frames) -> None:
    locator = DetectingLocator(backend, redetect=10)
    locator(SOURCE, 0, frames[0])
    locator(SOURCE, 1, frames[1])
    assert locator.full_searches == 1
    locator(SOURCE, 5, frames[5])
    locator(Path("other.mp4"), 6, frames[6])
    assert locator.full_searches == 3


def test_box_overlap_is_intersection_over_union() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_overlap(a, a) == pytest.approx(1.0)
    assert box_overlap(a, a + 5) == pytest.approx(25 / 175)
    assert box_overlap(a, a + 20) == 0.0


def test_small_faces_are_followed_in_an_enlarged_window(backend) -> None:
    clip = make_clip("grace_hopper", 12, (320, 240), seed=3, face_fraction=0.18)  # faces ~40 px
    reference, followed = DetectingLocator(backend, redetect=1), DetectingLocator(backend, redetect=10)
    for index, frame in enumerate(clip.frames):
        full, tracked = reference(SOURCE, index, frame), followed(SOURCE, index, frame)
        assert len(full) == len(tracked) == 1
        assert np.linalg.norm(full[0] - tracked[0], axis=1).mean() < 0.1 * inter_ocular_distance(full[0])
    assert followed.full_searches == 2


def test_among_similar_faces_the_followed_one_is_kept_until_another_is_clearly_larger(backend) -> None:
    left = make_clip("grace_hopper", 20, (320, 240), seed=3).frames
    right = make_clip("grace_hopper", 20, (320, 240), seed=4).frames
    frames = [np.hstack([a, b]) for a, b in zip(left, right, strict=True)]
    largest = [max(backend.detect_boxes(f), key=lambda face: face.area).bbox[0] > 320 for f in frames]
    locator = DetectingLocator(backend, redetect=1)  # a full search on every frame
    chosen = [locator(SOURCE, index, frame)[0][:, 0].mean() > 320 for index, frame in enumerate(frames)]

    def changes(sides: list[bool]) -> int:
        return sum(a != b for a, b in zip(sides, sides[1:]))

    assert changes(largest) == 2 and changes(chosen) == 1

