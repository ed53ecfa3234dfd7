"""Face tracks from extract output folders and the per-video face cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_cli.detect.config import FacesConfig
from deepfake_cli.detect.layouts import FAKE, LabelledInput
from deepfake_cli.detect.tracks import FaceSource, tracks_from_alignments
from deepfake_cli.media.alignments import Alignments, FaceRecord, load_alignments, save_alignments


def record(source: str, frame: int, face: int) -> FaceRecord:
    return FaceRecord(source=source, frame=frame, face=face, bbox=[0, 0, 10, 10], score=0.9,
                      landmarks=np.zeros((68, 2)), matrix=np.eye(2, 3), size=64,
                      file=f"{Path(source).stem}_{frame:06d}_{face}.png", sha1="0")


def faces_folder(folder: Path) -> Path:
    """An extract folder: two videos (one with a second face in frame 2) and one image."""
    records = [record("/v/a.mp4", f, 0) for f in (4, 0, 2)] + [record("/v/a.mp4", 2, 1)]
    records += [record("/v/b.mp4", f, 0) for f in range(3)] + [record("/v/c.png", 0, 0)]
    folder.mkdir()
    save_alignments(folder / "alignments.json", Alignments(size=64, faces=records))
    return folder


def test_one_track_per_source_in_frame_order_with_the_largest_face(tmp_path: Path) -> None:
    folder = faces_folder(tmp_path / "faces")
    tracks = {Path(t.source).name: t for t in tracks_from_alignments(folder, load_alignments(folder))}
    assert tracks["a.mp4"].frames == [0, 2, 4]
    assert tracks["a.mp4"].files[1] == folder / "a_000002_0.png"  # face 0 of frame 2, not face 1
    assert len(tracks["b.mp4"]) == 3 and not tracks["b.mp4"].still and tracks["c.png"].still
    assert tracks["a.mp4"].key == f"{folder}::/v/a.mp4"


def test_labelled_extract_folder_tracks_take_label_and_default_group(tmp_path: Path) -> None:
    folder = faces_folder(tmp_path / "faces")
    source = FaceSource(tmp_path / "cache", FacesConfig())
    tracks, skipped = source.labelled([LabelledInput(folder, FAKE)])
    assert len(tracks) == 3 and not skipped
    assert all(t.label == FAKE for t in tracks) and len({t.group for t in tracks}) == 3
    grouped, _ = source.labelled([LabelledInput(folder, FAKE, group="g")])
    assert {t.group for t in grouped} == {"g"}


def test_cache_folder_depends_on_file_and_face_settings(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    small = FaceSource(tmp_path / "cache", FacesConfig(size=64)).cache_folder(video)
    assert small == FaceSource(tmp_path / "cache", FacesConfig(size=64)).cache_folder(video)
    assert small != FaceSource(tmp_path / "cache", FacesConfig(size=128)).cache_folder(video)
    assert small.parent == tmp_path / "cache" and small.name.startswith("clip-")
    video.write_bytes(b"changed")
    assert FaceSource(tmp_path / "cache", FacesConfig(size=64)).cache_folder(video) != small


def test_unreadable_inputs_are_skipped_and_listed(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    source = FaceSource(tmp_path / "cache", FacesConfig())
    tracks, skipped = source.labelled([LabelledInput(tmp_path / "bad.mp4", FAKE)])
    assert tracks == [] and skipped[0]["input"].endswith("bad.mp4") and "cannot open" in skipped[0]["reason"]
