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
    assert cluster_descriptors(vectors[:1], 0.6).tolist() == [0]


def _unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.normal(size=(count, 128))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_clustering_keeps_look_alikes_apart_where_centroids_merge(rng: np.random.Generator) -> None:
    """Two people whose centres are 0.45 apart, faces spread 0.35 around them (in 128-D: within a
    person ~0.5 apart, across ~0.67). Every face is under 0.6 from the other person's centroid, so
    the old centroid clustering made one cluster; average linkage finds both, on every run."""
    centre_a = rng.normal(size=128) * 0.3
    centre_b = centre_a + 0.45 * _unit(rng, 1)[0]
    vectors = np.concatenate([centre_a + 0.35 * _unit(rng, 10), centre_b + 0.35 * _unit(rng, 6)])
    pair = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    assert pair[:10, 10:].min() > 0.6 and pair[:10, :10].max() < 0.6 and pair[10:, 10:].max() < 0.6
    assert np.linalg.norm(vectors[10:] - vectors[:10].mean(axis=0), axis=1).max() < 0.6  # centroids would merge
    labels = cluster_descriptors(vectors, 0.6)
    assert labels.tolist() == [0] * 10 + [1] * 6
    for _ in range(3):
        assert cluster_descriptors(vectors, 0.6).tolist() == labels.tolist()


def test_clustering_does_not_chain_people_together(rng: np.random.Generator) -> None:
    """Two people 0.9 apart joined by a chain of 6 in-between faces 0.12 apart: every face has a
    neighbour under 0.6, so connected components of the same-person graph join everyone; average
    linkage keeps the two people apart, the same way on every run and whatever the input order."""
    from scipy.sparse.csgraph import connected_components

    direction = _unit(rng, 1)[0]
    base = rng.normal(size=128) * 0.3
    people = []
    for k in range(2):
        jitter = _unit(rng, 8)
        jitter -= np.outer(jitter @ direction, direction)  # off the line between the two people
        people.append(base + 0.9 * k * direction + 0.04 * jitter)
    chain = base + np.outer(np.linspace(0.15, 0.75, 6), direction)
    for vectors, a, b in ((np.concatenate([people[0], chain, people[1]]), slice(0, 8), slice(14, 22)),
                          (np.concatenate([chain, people[1], people[0]]), slice(14, 22), slice(6, 14))):
        distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
        assert connected_components(distances < 0.6, directed=False)[0] == 1  # the chain links everyone
        labels = cluster_descriptors(vectors, 0.6)
        assert labels.max() == 1 and len(set(labels[a])) == 1 and len(set(labels[b])) == 1
        assert labels[a][0] != labels[b][0]
        assert cluster_descriptors(vectors, 0.6).tolist() == labels.tolist()


def test_sampled_clustering_of_many_faces_matches(rng: np.random.Generator) -> None:
    """Above ``exact`` faces a sample is clustered and the rest assigned; far-off faces the sample
    missed form clusters of their own."""
    centres = rng.normal(size=(5, 128))
    centres = 2.0 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(5), [40, 30, 20, 9, 1])
    vectors = centres[truth] + rng.normal(scale=0.02, size=(len(truth), 128))
    exact = cluster_descriptors(vectors, 0.53)
    sampled = cluster_descriptors(vectors, 0.53, exact=25)
    assert exact.tolist() == truth.tolist() and sampled.tolist() == truth.tolist()


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


def test_misaligned_faces_never_seed_or_join_a_cluster(rng: np.random.Generator) -> None:
    """A face with failed landmarks comes first (it would have started cluster 0) and sits between
    two people: it is misaligned, in no cluster, and the two people stay apart."""
    from deepfake_cli.sort import FaceScore, SortOptions, judge
    from deepfake_cli.media.alignments import FaceRecord

    def face(name: str, descriptor: np.ndarray, fit: float) -> FaceScore:
        record = FaceRecord.__new__(FaceRecord)
        record.file = name
        return FaceScore(record, descriptor, 100.0, fit, np.zeros((32, 32), np.float32))

    a, b = rng.normal(size=128), rng.normal(size=128)
    a, b = 0.5 * a / np.linalg.norm(a), 0.5 * b / np.linalg.norm(b)  # ~0.7 apart, each ~0.35 from the bad face
    faces = [face("bad.png", (a + b) / 2, 0.3)]
    faces += [face(f"a{i}.png", a + rng.normal(scale=0.005, size=128), 0.03) for i in range(5)]
    faces += [face(f"b{i}.png", b + rng.normal(scale=0.005, size=128), 0.03) for i in range(3)]
    sizes = judge(faces, SortOptions())
    assert sizes == [5, 3]
    assert (faces[0].cluster, faces[0].verdict) == (-1, "misaligned")
    assert [f.cluster for f in faces[1:]] == [0] * 5 + [1] * 3
    assert [f.verdict for f in faces[1:]] == ["keep"] * 5 + ["other_person"] * 3
    # every face misaligned: no cluster at all, nothing kept
    assert judge(faces[:1], SortOptions()) == [] and faces[0].verdict == "misaligned"
