"""`dfk evaluate`: identity transfer is 0 for an unchanged clip and 1 for a clip of B."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from deepfake_cli.media.synthetic import load_still


def test_unchanged_clip_transfers_no_identity_and_keeps_everything(run_dfk, clip_a: Path, faces_a: Path,
                                                                    faces_b: Path, tmp_path: Path) -> None:
    result = run_dfk("-q", "evaluate", clip_a, clip_a, "--a", faces_a, "--b", faces_b, "-o", tmp_path / "q.json")
    assert result.code == 0, result
    figures = json.loads((tmp_path / "q.json").read_text())
    assert figures["identity_transfer"] == 0.0 and figures["faces_found"] == 1.0
    assert figures["landmark_nme"] == 0.0 and figures["background_psnr_db"] is None
    assert figures["sharpness"] == 1.0
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
