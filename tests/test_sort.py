"""`dfk sort`: identity clusters, blur, fit and near-duplicates of an extract folder; --apply; hand
deletions; and that train-swap, convert --alignments and evaluate then ignore the rejects."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.media.alignments import load_alignments, save_alignments
from deepfake_cli.media.images import read_image, write_image
from deepfake_cli.sort import SHEET_PREFIX, cluster_descriptors, is_sort_output

B_FACES = 12


def _mixed_folder(folder: Path, faces_a: Path, faces_b: Path) -> Path:
    """One extract folder: all of A's faces, the first 12 of B's, a blurred copy and an exact copy
    of one of A's faces (each with its own record)."""
    folder.mkdir()
    a, b = load_alignments(faces_a), load_alignments(faces_b)
    b.faces = b.faces[:B_FACES]
    for source, alignments in ((faces_a, a), (faces_b, b)):
        for record in alignments.faces:
            shutil.copy(source / record.file, folder / record.file)
    a.faces += b.faces
    a.sources.update({key: {**value, "faces": B_FACES} for key, value in b.sources.items()})
    original = a.faces[5]
    image = read_image(folder / original.file)
    for name, pixels in (("zz_blurred.png", cv2.GaussianBlur(image, (0, 0), 2.0)), ("zz_copy.png", image)):
        write_image(folder / name, pixels)
        record = copy.deepcopy(original)
        record.file, record.sha1 = name, hashlib.sha1((folder / name).read_bytes()).hexdigest()
        a.faces.append(record)
    save_alignments(folder / "alignments.json", a)
    return folder


@pytest.fixture(scope="module")
def sorted_once(tmp_path_factory: pytest.TempPathFactory, faces_a: Path, faces_b: Path) -> tuple[Path, str]:
    """A mixed folder after one `dfk sort` (no --apply), and the command's output."""
    from deepfake_cli.sort import SortOptions, sort_faces

    folder = _mixed_folder(tmp_path_factory.mktemp("sort") / "faces", faces_a, faces_b)
    summary = sort_faces(folder, SortOptions(), progress=False)
    return folder, "\n".join(summary.lines())


def test_sort_separates_two_people_and_flags_blur_and_duplicates(sorted_once, faces_a: Path, faces_b: Path) -> None:
    folder, out = sorted_once
    report = json.loads((folder / "sort.json").read_text())
    faces = {f["file"]: f for f in report["faces"]}
    a_files = {r.file for r in load_alignments(faces_a).faces}
    b_files = {r.file for r in load_alignments(faces_b).faces[:B_FACES]}
    assert set(faces) == a_files | b_files | {"zz_blurred.png", "zz_copy.png"}
    assert [c["faces"] for c in report["clusters"]] == [len(a_files) + 2, B_FACES]
    assert report["clusters"][0]["kept"] and not report["clusters"][1]["kept"]
    assert {faces[f]["cluster"] for f in a_files} == {0} and {faces[f]["cluster"] for f in b_files} == {1}
    assert {faces[f]["verdict"] for f in b_files} == {"other_person"}
    assert {faces[f]["verdict"] for f in a_files} == {"keep"}
    assert faces["zz_blurred.png"]["verdict"] == "blurry" and faces["zz_blurred.png"]["blur"] < 0.3
    original = load_alignments(faces_a).faces[5].file
    assert faces["zz_copy.png"]["verdict"] == "duplicate" and faces["zz_copy.png"]["duplicate_of"] == original
    assert all(0 < f["fit"] < 0.06 for f in report["faces"])
    assert all(set(f) == {"file", "cluster", "blur", "fit", "duplicate_of", "verdict"} for f in report["faces"])
    assert "2 identity clusters (0: 32, 1: 12)" in out and "keep 30, other_person 12" in out
    assert "--apply" in out
    # without --apply nothing moves and alignments.json still lists every face
    assert len(load_alignments(folder).faces) == len(faces) and not (folder / "rejected").exists()
    for k in (0, 1):
        sheet = read_image(folder / f"{SHEET_PREFIX}{k}.png")
        assert sheet.shape[0] > 96 and sheet.shape[1] > 96 and is_sort_output(folder / f"{SHEET_PREFIX}{k}.png")


def test_sort_apply_moves_rejects_and_training_ignores_them(run_dfk, tmp_path: Path, faces_a: Path,
                                                            faces_b: Path) -> None:
    from deepfake_cli.media.sources import media_frames
    from deepfake_cli.swap.data import load_faces

    folder = _mixed_folder(tmp_path / "faces", faces_a, faces_b)
    result = run_dfk("-q", "sort", folder, "--apply")
    assert result.code == 0, result
    assert "moved 14 rejects" in result.out
    rejected = folder / "rejected"
    assert len(list((rejected / "other_person").glob("*.png"))) == B_FACES
    assert [p.name for p in (rejected / "blurry").iterdir()] == ["zz_blurred.png"]
    assert [p.name for p in (rejected / "duplicate").iterdir()] == ["zz_copy.png"]
    kept = {r.file for r in load_alignments(faces_a).faces}
    alignments = load_alignments(folder)
    assert {r.file for r in alignments.faces} == kept
    assert {p.name for p in folder.glob("*.png") if not is_sort_output(p)} == kept
    assert sum(v["faces"] for v in alignments.sources.values()) == len(kept)
    assert not list(folder.glob(".*.tmp"))
    # train-swap's loader sees neither rejected/ nor the contact sheets; evaluate's reference neither
    faces = load_faces(folder, 32)
    assert len(faces) == len(kept) and set(faces.files) == kept
    assert sum(1 for _ in media_frames(folder)) == len(kept)
    # a second run finds one clean person
    again = run_dfk("-q", "sort", folder)
    assert again.code == 0 and "1 identity clusters (0: 30)" in again.out and "keep 30, other_person 0" in again.out
    assert not (folder / f"{SHEET_PREFIX}1.png").exists()


def test_hand_deleted_faces_are_dropped_from_alignments(run_dfk, tmp_path: Path, faces_a: Path,
                                                        caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake_cli.swap.data import load_faces

    folder = tmp_path / "faces"
    shutil.copytree(faces_a, folder)
    gone = sorted(folder.glob("*.png"))[:2]
    for path in gone:
        path.unlink()
    monkeypatch.setattr(logging.getLogger("deepfake_cli"), "propagate", True)  # the CLI may have turned it off
    with caplog.at_level(logging.INFO, logger="deepfake_cli"):
        faces = load_faces(folder, 32)
    assert len(faces) == 28 and "skipping 2 listed faces" in caplog.text
    result = run_dfk("-q", "sort", folder)
    assert result.code == 0 and "dropped 2 faces from alignments.json: PNG deleted" in result.out, result
    assert {r.file for r in load_alignments(folder).faces} == {p.name for p in folder.glob("*.png")
                                                               if not is_sort_output(p)}
    assert "dropped" not in run_dfk("-q", "sort", folder).out


def test_convert_with_alignments_skips_faces_whose_png_is_gone(run_dfk, tmp_path: Path, clip_a: Path,
                                                               faces_a: Path, tiny_swap_model: Path) -> None:
    folder = tmp_path / "faces"
    shutil.copytree(faces_a, folder)
    records = load_alignments(folder).faces
    (folder / records[3].file).unlink()
    out = tmp_path / "out.mp4"
    result = run_dfk("convert", clip_a, "-m", tiny_swap_model, "-o", out, "--alignments", folder,
                     "--device", "cpu")
    assert result.code == 0, result
    assert "skipping 1 listed faces whose PNG is gone" in result.err
    assert f"{len(records)} frames ({len(records) - 1} with a swapped face)" in result.out


def test_bad_input_is_one_error_line(run_dfk, tmp_path: Path) -> None:
    result = run_dfk("sort", tmp_path / "nowhere")
    expected = f"error: face folder not found ({tmp_path / 'nowhere'})"
    assert result.code != 0 and result.err.strip().splitlines() == [expected]
    (tmp_path / "plain").mkdir()
    result = run_dfk("sort", tmp_path / "plain")
    lines = result.err.strip().splitlines()
    assert result.code != 0 and len(lines) == 1 and lines[0].startswith("error: no alignments.json here"), result
    result = run_dfk("sort", tmp_path / "plain", "--min-blur", "-1")
    assert result.code != 0 and result.err.strip().startswith("error: --min-blur must be >= 0")


def test_clustering_is_deterministic_and_largest_first(rng: np.random.Generator) -> None:
    centre_a, centre_b = rng.normal(size=128), rng.normal(size=128)
    centre_a, centre_b = centre_a / np.linalg.norm(centre_a), centre_b / np.linalg.norm(centre_b)
    small = centre_a + rng.normal(scale=0.01, size=(3, 128))
    large = centre_b + rng.normal(scale=0.01, size=(7, 128))
    vectors = np.concatenate([small, large])
    labels = cluster_descriptors(vectors, 0.6)
    assert labels.tolist() == [1] * 3 + [0] * 7
    assert cluster_descriptors(vectors, 0.6).tolist() == labels.tolist()
    assert cluster_descriptors(vectors, 10.0).tolist() == [0] * 10
    assert cluster_descriptors(np.zeros((0, 128)), 0.6).tolist() == []


def test_bad_landmarks_measure_as_misaligned(faces_a: Path, rng: np.random.Generator) -> None:
    from deepfake_cli.sort import SortOptions, judge, score_face

    alignments = load_alignments(faces_a)
    record = alignments.faces[0]
    image = read_image(faces_a / record.file)
    good = score_face(image, record, alignments.coverage)
    bad_record = copy.deepcopy(record)
    width = record.bbox[2] - record.bbox[0]
    bad_record.landmarks = record.landmarks + rng.normal(scale=0.15 * width, size=record.landmarks.shape)
    bad = score_face(image, bad_record, alignments.coverage)
    assert good.fit < 0.05 and bad.fit > 0.1
    judge([good, bad], SortOptions(same_person=10.0))
    assert (good.verdict, bad.verdict) == ("keep", "misaligned")
