"""`dfk evaluate`: identity transfer is 0 for an unchanged clip and 1 for a clip of B; mouth agreement
and seam strength on hand-made landmarks and pastes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

import pytest

from deepfake_cli.evaluate import mouth_gap, mouths_agree, seam_steps
from deepfake_cli.faces.blend import feather_blend
from deepfake_cli.faces.color import match_color
from deepfake_cli.faces.masks import MaskShape, blend_mask
from deepfake_cli.faces.template import MEAN_FACE_68
from deepfake_cli.media.synthetic import load_still

FACE = MEAN_FACE_68 * 100 + np.array([70.0, 60.0])


def _with_mouth(gap: float, scale: float = 1.0) -> np.ndarray:
    """The template face with its inner lips ``gap`` inter-ocular distances apart."""
    points = FACE * scale
    iod = float(np.linalg.norm(points[36] - points[45]))  # outer eye corners, as evaluate
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        middle = (points[upper] + points[lower]) / 2
        points[upper], points[lower] = middle - [0, gap * iod / 2], middle + [0, gap * iod / 2]
    return points


def test_mouth_gap_reads_open_and_closed_inner_lips() -> None:
    assert mouth_gap(_with_mouth(0.0)) == pytest.approx(0.0, abs=1e-9)
    assert mouth_gap(_with_mouth(0.3)) == pytest.approx(0.3)


def test_open_mouth_against_closed_one_disagrees_and_a_small_difference_agrees() -> None:
    assert not mouths_agree(_with_mouth(0.3), _with_mouth(0.0))
    assert not mouths_agree(_with_mouth(0.0), _with_mouth(0.2))
    assert mouths_agree(_with_mouth(0.3), _with_mouth(0.27))
    assert mouths_agree(_with_mouth(0.0), _with_mouth(0.02, scale=2.0)), "gaps are in each face's own eye distance"


def test_missing_converted_face_counts_as_disagreeing() -> None:
    assert not mouths_agree(_with_mouth(0.0), None)


def _skin(seed: int) -> np.ndarray:
    """A lit skin-coloured frame with fine texture: light falls off from left to right."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, -40, 240)[None, :, None]
    frame = np.array([190.0, 140.0, 120.0]) + ramp + rng.normal(0, 6, (240, 240, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def _seam(source: np.ndarray, converted: np.ndarray) -> float:
    conv, src, _, _ = seam_steps(source, converted, FACE)
    return conv / src


def _paste(source: np.ndarray, face: np.ndarray) -> np.ndarray:
    return feather_blend(source, face, blend_mask("hull", FACE, source.shape, mask_shape=MaskShape()))


def test_unchanged_frame_has_seam_strength_one() -> None:
    source = _skin(0)
    conv, src, conv_gradient, src_gradient = seam_steps(source, source.copy(), FACE)
    assert conv == src > 0 and conv_gradient == src_gradient > 0


def test_paste_with_a_colour_step_along_the_hull_scores_well_above_one() -> None:
    source = _skin(0)
    lighter = np.clip(source.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    assert _seam(source, _paste(source, lighter)) > 2.0


def test_colour_matched_paste_of_another_face_scores_near_one() -> None:
    source = _skin(0)
    other = np.clip(_skin(1).astype(np.int16) + 30, 0, 255).astype(np.uint8)
    matched = match_color(other, source, blend_mask("hull", FACE, source.shape) > 0.5, "avg")
    assert 0.8 < _seam(source, _paste(source, matched)) < 1.2
    assert _seam(source, _paste(source, other)) > 2.0


def test_unchanged_clip_transfers_no_identity_and_keeps_everything(run_dfk, clip_a: Path, faces_a: Path,
                                                                    faces_b: Path, tmp_path: Path) -> None:
    result = run_dfk("-q", "evaluate", clip_a, clip_a, "--a", faces_a, "--b", faces_b, "-o", tmp_path / "q.json")
    assert result.code == 0, result
    figures = json.loads((tmp_path / "q.json").read_text())
    assert figures["identity_transfer"] == 0.0 and figures["faces_found"] == 1.0
    assert figures["landmark_nme"] == 0.0 and figures["background_psnr_db"] is None
    assert figures["sharpness"] == 1.0
    assert figures["mouth_agreement"] == 1.0 and figures["seam_strength"] == 1.0 and figures["seam_gradient"] == 1.0
    assert figures["distance_to_a"] < 0.3 < 0.6 < figures["distance_to_b"]


def test_clip_of_b_counts_as_full_identity_transfer(run_dfk, clip_a: Path, clip_b: Path, faces_a: Path,
                                                    faces_b: Path) -> None:
    result = run_dfk("-q", "evaluate", clip_a, clip_b, "--a", faces_a, "--b", faces_b)
    assert result.code == 0, result
    figures = json.loads(result.out)
    assert figures["identity_transfer"] == 1.0
    assert figures["landmark_nme"] > 0.05 and figures["background_psnr_db"] < 30


def test_blurred_face_scores_low_sharpness(run_dfk, clip_a: Path, clip_a_data, faces_a: Path, faces_b: Path,
                                           tmp_path: Path) -> None:
    from deepfake_cli.media.synthetic import write_clip

    blurred = write_clip(tmp_path / "blurred.mp4", [cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip_a_data.frames])
    result = run_dfk("-q", "evaluate", clip_a, blurred, "--a", faces_a, "--b", faces_b)
    assert result.code == 0, result
    assert json.loads(result.out)["sharpness"] < 0.3


def test_reference_without_a_face_is_a_clear_error(run_dfk, clip_a: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 200, np.uint8))
    still = tmp_path / "b.png"
    cv2.imwrite(str(still), cv2.cvtColor(load_still("grace_hopper"), cv2.COLOR_RGB2BGR))
    result = run_dfk("-q", "evaluate", clip_a, clip_a, "--a", blank, "--b", still)
    assert result.code != 0 and "no face found in the identity reference" in result.err


def test_clips_of_different_lengths_are_refused(run_dfk, clip_a: Path, clip_a_data, faces_a: Path, faces_b: Path,
                                                tmp_path: Path) -> None:
    from deepfake_cli.media.synthetic import write_clip

    short = write_clip(tmp_path / "short.mp4", clip_a_data.frames[:10])
    result = run_dfk("-q", "evaluate", clip_a, short, "--a", faces_a, "--b", faces_b)
    assert result.code != 0 and "different frame counts" in result.err
