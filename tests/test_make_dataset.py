"""`dfk make-dataset`: labelled real/fake videos that train-detect reads with groups intact."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from deepfake_cli.detect.layouts import FAKE, REAL, read_dataset
from deepfake_cli.media.video import VideoReader


def test_pairs_become_a_dfdc_style_dataset_with_fakes_grouped_with_originals(
        run_dfk, clip_a: Path, clip_b: Path, tiny_swap_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    result = run_dfk("-q", "make-dataset", "--pair", clip_a, clip_b, "-m", tiny_swap_model, "-o", root)
    assert result.code == 0, result
    assert "2 real and 2 fake videos (2 converted now" in result.out
    rows = list(csv.DictReader((root / "dataset.csv").open()))
    fakes = [r for r in rows if r["label"] == "FAKE"]
    assert {r["direction"] for r in fakes} == {"a2b", "b2a"}
    assert all((root / r["original"]).is_file() and r["model"] == tiny_swap_model.name for r in fakes)
    for row in fakes:
        assert sum(1 for _ in VideoReader(root / row["path"])) == 30
    metadata = json.loads((root / "metadata.json").read_text())
    assert len(metadata) == 4
    items = read_dataset(root)
    assert sorted(i.label for i in items) == [REAL, REAL, FAKE, FAKE]
    assert len({i.group for i in items}) == 2

    again = run_dfk("-q", "make-dataset", "--pair", clip_a, clip_b, "-m", tiny_swap_model, "-o", root)
    assert again.code == 0 and "0 converted now, 2 already there" in again.out


def test_model_count_must_match_the_pairs(run_dfk, clip_a: Path, clip_b: Path, tiny_swap_model: Path,
                                          tmp_path: Path) -> None:
    result = run_dfk("make-dataset", "--pair", clip_a, clip_b, "--pair", clip_b, clip_a,
                     "-m", tiny_swap_model, "-m", tiny_swap_model, "-m", tiny_swap_model, "-o", tmp_path / "d")
    assert result.code != 0 and "one model for all pairs or one per pair" in result.err


def test_source_videos_keep_their_permissions_and_same_names_stay_apart(
        clip_a: Path, clip_b: Path, tiny_swap_model: Path, tmp_path: Path) -> None:
    import os
    import shutil

    from deepfake_cli.make_dataset import make_dataset

    videos_a = tmp_path / "a"
    for sub in ("one", "two"):
        (videos_a / sub).mkdir(parents=True)
        shutil.copy(clip_a, videos_a / sub / "clip.mp4")
        os.chmod(videos_a / sub / "clip.mp4", 0o600)
    summary = make_dataset([(videos_a, clip_b)], [tiny_swap_model], tmp_path / "set", progress=False)
    assert summary.made == 3 and len({e.path for e in summary.entries}) == 6
    assert all((videos_a / sub / "clip.mp4").stat().st_mode & 0o777 == 0o600 for sub in ("one", "two"))
