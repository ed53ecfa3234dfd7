"""Per-frame work of convert: alignment, batched model calls and pasting faces back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.faces.align import alignment_matrix, warp_face
from deepfake_cli.faces.masks import MaskShape
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.faces.template import MEAN_FACE_68
from deepfake_cli.convert import ConvertOptions
from deepfake_cli.convert.frames import BlendSettings, FaceJob, FrameJob, FrameSwapper, paste_face

SIZE, COVERAGE = 64, 0.625


class MaskingModel:
    """A stand-in gan: inverts faces and predicts a constant mask ``alpha``."""

    size, coverage, kind = SIZE, COVERAGE, "gan"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.batches: list[int] = []

    def swap(self, faces: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches.append(len(faces))
        return 1.0 - faces, torch.full_like(faces[:, :1], self.alpha)


def _frame_and_landmarks(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    frame = rng.integers(40, 200, size=(160, 200, 3)).astype(np.uint8)
    return frame, (MEAN_FACE_68 - 0.5) * 60 + np.array([100.0, 80.0])


def _face_job(frame: np.ndarray, landmarks: np.ndarray, alpha: int | None) -> FaceJob:
    matrix = alignment_matrix(landmarks, SIZE, COVERAGE)
    crop = warp_face(frame, matrix, SIZE)
    swapped = 255 - crop if alpha is None else np.dstack([255 - crop, np.full(crop.shape[:2], alpha, np.uint8)])
    return FaceJob(landmarks, matrix, crop, swapped)


def test_learned_mask_of_zero_leaves_the_frame_and_hull_changes_only_the_face(rng: np.random.Generator) -> None:
    frame, landmarks = _frame_and_landmarks(rng)
    untouched = frame.copy()
    paste_face(untouched, _face_job(frame, landmarks, alpha=0), BlendSettings(mask="learned", color="none"))
    np.testing.assert_array_equal(untouched, frame)

    pasted = frame.copy()
    paste_face(pasted, _face_job(frame, landmarks, alpha=None), BlendSettings(mask="hull", color="none"))
    changed = np.any(pasted != frame, axis=2)
    x0, y0 = landmarks.min(axis=0).astype(int)
    x1, y1 = landmarks.max(axis=0).astype(int)
    margin = int(0.15 * inter_ocular_distance(landmarks)) + 1  # the feather's faint tail (12% erode, 8% sigma)
    outside = np.ones_like(changed)
    outside[y0 - margin:y1 + margin + 1, x0 - margin:x1 + margin + 1] = False
    assert not changed[outside].any() and changed[80, 100]


def test_combined_with_a_full_learned_mask_equals_the_hull(rng: np.random.Generator) -> None:
    frame, landmarks = _frame_and_landmarks(rng)
    results = []
    for kind, alpha in (("hull", None), ("combined", 255)):
        out = frame.copy()
        paste_face(out, _face_job(frame, landmarks, alpha), BlendSettings(mask=kind, mask_shape=MaskShape()))
        results.append(out)
    assert np.abs(results[0].astype(int) - results[1]).max() <= 1


def test_swapper_batches_faces_and_passes_faceless_frames_through(rng: np.random.Generator) -> None:
    frame, landmarks = _frame_and_landmarks(rng)
    model = MaskingModel()
    swapper = FrameSwapper(model, "a2b", ConvertOptions().blend_settings(model.kind), torch.device("cpu"))
    swapper.start_source(lambda source, index, frame: [landmarks] if index % 2 == 0 else [], fps=25.0, smooth=1.0)
    jobs = [FrameJob(Path("clip.mp4"), i, frame) for i in range(6)]
    swapper.find_faces(jobs)
    swapper.run_model(jobs[:4])
    swapper.run_model(jobs[4:])
    swapper.compose(jobs)
    assert model.batches == [2, 1]
    assert [job.swapped for job in jobs] == [1, 0, 1, 0, 1, 0]
    assert all(job.output is frame for job in jobs[1::2])
    assert all(np.any(job.output != frame) for job in jobs[0::2])
    assert swapper.settings.mask == "learned"  # gan models blend with their own mask by default


def test_original_models_cannot_use_a_learned_mask() -> None:
    from deepfake_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a gan model"):
        ConvertOptions(mask="combined").blend_settings("original")
    assert ConvertOptions().blend_settings("original").mask == "hull"


@pytest.mark.parametrize("label_all", [True, False])
def test_watermark_labels_faceless_frames_only_when_asked(rng: np.random.Generator, label_all: bool) -> None:
    frame, _ = _frame_and_landmarks(rng)
    original = frame.copy()
    options = ConvertOptions(watermark=True)
    swapper = FrameSwapper(MaskingModel(), "a2b", options.blend_settings("gan"), torch.device("cpu"))
    swapper.start_source(lambda source, index, image: [], fps=25.0, smooth=0.0, label_all=label_all)
    job = FrameJob(Path("clip.mp4"), 0, frame)
    swapper.find_faces([job])
    swapper.compose([job])
    assert job.swapped == 0 and (job.output is frame) != label_all
    np.testing.assert_array_equal(frame, original)  # the decoded frame itself is never drawn on
