"""`dfk extract`: faces found, landmarks consistent with known motion, files and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.faces import create_backend
from deepfake_cli.faces.align import transform_points
from deepfake_cli.media.alignments import load_alignments
from deepfake_cli.media.synthetic import Clip, load_still


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_landmarks_follow_the_known_motion_within_5_percent_iod(faces_a: Path, clip_a_data: Clip) -> None:
    still_landmarks = create_backend("offline").detect(load_still("astronaut"))[0].landmarks
    records = {r.frame: r for r in load_alignments(faces_a).faces}
    assert len(records) >= 28
    good = 0
    for frame, matrix in enumerate(clip_a_data.matrices):
        if frame not in records:
            continue
        expected = transform_points(still_landmarks, matrix)
        iod = np.linalg.norm(expected[36:42].mean(0) - expected[42:48].mean(0))
        error = np.linalg.norm(records[frame].landmarks - expected, axis=1).mean()
        good += error <= 0.05 * iod
    assert good >= 0.9 * len(clip_a_data.matrices)


def test_extract_writes_aligned_pngs_and_a_complete_alignments_file(faces_a: Path, clip_a: Path) -> None:
    data = json.loads((faces_a / "alignments.json").read_text())
    assert data["version"] == 1 and data["size"] == 128
    record = data["faces"][0]
    assert set(record) >= {"source", "frame", "face", "bbox", "score", "landmarks", "matrix", "size", "file", "sha1"}
    assert np.array(record["landmarks"]).shape == (68, 2) and np.array(record["matrix"]).shape == (2, 3)
    assert record["file"] == f"{clip_a.stem}_{record['frame']:06d}_0.png"
    image = cv2.imread(str(faces_a / record["file"]))
    assert image.shape == (128, 128, 3)
    import hashlib

    assert hashlib.sha1((faces_a / record["file"]).read_bytes()).hexdigest() == record["sha1"]


def test_rerun_skips_done_sources_and_never_duplicates_records(run_dfk, clip_a: Path, tmp_path: Path) -> None:
    out = tmp_path / "faces"
    first = run_dfk("extract", clip_a, "-o", out, "--size", "64", "--every-n", "3")
    assert first.code == 0, first
    count = len(load_alignments(out).faces)
    second = run_dfk("extract", clip_a, "-o", out, "--size", "64", "--every-n", "3")
    assert second.code == 0 and "1 already done" in second.out
    assert len(load_alignments(out).faces) == count == 10
    assert len(list(out.glob("*.png"))) == count


def test_resuming_with_another_size_is_refused(run_dfk, clip_a: Path, tmp_path: Path) -> None:
    out = tmp_path / "faces"
    assert run_dfk("extract", clip_a, "-o", out, "--size", "64", "--every-n", "10").code == 0
    result = run_dfk("extract", clip_a, "-o", out, "--size", "96")
    assert result.code != 0 and "size 64" in _error_lines(result.err)[0]


def test_identical_faces_are_written_once(run_dfk, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    still = cv2.cvtColor(load_still("grace_hopper"), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(images / "one.png"), still)
    cv2.imwrite(str(images / "two.png"), still)
    result = run_dfk("extract", images, "-o", tmp_path / "out", "--size", "64")
    assert result.code == 0, result
    assert len(load_alignments(tmp_path / "out").faces) == 1 and "1 duplicates dropped" in result.out


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_grayscale_rgba_and_16_bit_images_work(run_dfk, tmp_path: Path, kind: str) -> None:
    bgr = cv2.cvtColor(load_still("astronaut"), cv2.COLOR_RGB2BGR)
    image = {
        "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "rgba": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "16bit": bgr.astype(np.uint16) * 257,
    }[kind]
    path = tmp_path / f"face_{kind}.png"
    cv2.imwrite(str(path), image)
    result = run_dfk("extract", path, "-o", tmp_path / "out", "--size", "64")
    assert result.code == 0, result
    assert len(load_alignments(tmp_path / "out").faces) == 1


def test_all_faces_keeps_every_face(run_dfk, tmp_path: Path) -> None:
    a = cv2.resize(load_still("astronaut")[20:260, 120:330], (200, 240))
    b = cv2.resize(load_still("grace_hopper")[60:400, 140:400], (200, 240))
    pair = tmp_path / "pair.png"
    cv2.imwrite(str(pair), cv2.cvtColor(np.hstack([a, b]), cv2.COLOR_RGB2BGR))
    assert run_dfk("extract", pair, "-o", tmp_path / "one", "--size", "64").code == 0
    assert run_dfk("extract", pair, "-o", tmp_path / "all", "--size", "64", "--all-faces").code == 0
    assert len(load_alignments(tmp_path / "one").faces) == 1
    assert len(load_alignments(tmp_path / "all").faces) == 2


def test_missing_input_is_one_clear_error_line(run_dfk, tmp_path: Path) -> None:
    result = run_dfk("extract", tmp_path / "nope.mp4", "-o", tmp_path / "out")
    assert result.code != 0
    assert _error_lines(result.err) == [f"error: input not found ({tmp_path / 'nope.mp4'})"]
    assert "Traceback" not in result.err and not (tmp_path / "out").exists()


def test_corrupt_video_is_skipped_and_counted(run_dfk, clip_b: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    shutil.copy(clip_b, folder / "good.mp4")
    result = run_dfk("extract", folder, "-o", tmp_path / "out", "--size", "64", "--every-n", "5")
    assert result.code == 0, result
    assert "1 unreadable skipped" in result.out and "broken.mp4" in result.err
    assert len(load_alignments(tmp_path / "out").faces) == 6


def test_no_face_anywhere_exits_non_zero_without_output(run_dfk, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    result = run_dfk("extract", blank, "-o", tmp_path / "out")
    assert result.code != 0 and "no face found" in _error_lines(result.err)[0]
    assert not (tmp_path / "out" / "alignments.json").exists()


def test_unknown_suffix_is_an_error(run_dfk, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    result = run_dfk("extract", notes, "-o", tmp_path / "out")
    assert result.code != 0 and "not an image or video" in result.err


def test_debug_shows_the_traceback(run_dfk, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="input not found"):
        run_dfk("--debug", "extract", tmp_path / "nope.png", "-o", tmp_path / "out")
