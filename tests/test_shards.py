"""`--shard K/N` batch jobs and skipping finished outputs, for convert and make-dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from deepfake_cli.errors import ConfigError
from deepfake_cli.media.shards import SLURM_TASK_VARIABLE, Shard, parse_shard
from deepfake_cli.media.synthetic import Clip, load_still, write_clip
from deepfake_cli.media.video import VideoReader


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("n_items", [0, 1, 2, 5, 7])
def test_shards_partition_the_list_exactly_and_deterministically(n_items: int) -> None:
    items = [f"clip_{i:02d}.mp4" for i in range(n_items)]
    for count in range(1, n_items + 4):  # includes N > number of files: some shards are empty
        shards = [Shard(k, count).select(items) for k in range(1, count + 1)]
        assert sorted(x for shard in shards for x in shard) == items  # union is everything, once each
        assert sum(len(s) for s in shards) == n_items  # hence pairwise disjoint
        assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1  # balanced
        assert shards == [parse_shard(f"{k}/{count}").select(list(items)) for k in range(1, count + 1)]
        for k, shard in enumerate(shards, start=1):
            assert shard == [x for i, x in enumerate(items) if i % count == k - 1]


def test_auto_takes_k_from_the_slurm_array_task_id() -> None:
    assert parse_shard("auto/4", {SLURM_TASK_VARIABLE: "3"}) == Shard(3, 4)
    assert parse_shard(" auto/1 ", {SLURM_TASK_VARIABLE: "1"}) == Shard(1, 1)
    with pytest.raises(ConfigError, match="not set"):
        parse_shard("auto/4", {})
    with pytest.raises(ConfigError, match=r"in 1\.\.4; got '0'.*--array=1-4"):
        parse_shard("auto/4", {SLURM_TASK_VARIABLE: "0"})  # an array started at 0
    with pytest.raises(ConfigError, match=r"in 1\.\.4; got '5'"):
        parse_shard("auto/4", {SLURM_TASK_VARIABLE: "5"})
    for bad in ("0/3", "4/3", "x/2", "2", "1/0", "1/x", "-1/3", "1/2/3", ""):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad, {})


@pytest.mark.parametrize("command", ["convert", "make-dataset"])
def test_bad_shard_values_are_one_line_errors(run_dfk, command: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    args = (["convert", videos, "-m", tmp_path / "model", "-o", tmp_path / "out"] if command == "convert" else
            ["make-dataset", "--pair", videos, videos, "-m", tmp_path / "model", "-o", tmp_path / "out"])
    monkeypatch.delenv(SLURM_TASK_VARIABLE, raising=False)
    for value, message in (("0/3", "K in 1..3"), ("4/3", "K in 1..3"), ("x/2", "K in 1..2"), ("3", "K/N or auto/N"),
                           ("auto/2", f"{SLURM_TASK_VARIABLE}, which is not set")):
        result = run_dfk(*args, "--shard", value)
        assert result.code != 0, result
        lines = _error_lines(result.err)
        assert len(lines) == 1 and "--shard" in lines[0] and message in lines[0], result
        assert "Traceback" not in result.err and not (tmp_path / "out").exists()
    monkeypatch.setenv(SLURM_TASK_VARIABLE, "0")
    result = run_dfk(*args, "--shard", "auto/2")
    assert result.code != 0 and f"{SLURM_TASK_VARIABLE} in 1..2; got '0'" in _error_lines(result.err)[0]


@pytest.fixture()
def clips_folder(tmp_path: Path, clip_a_data: Clip) -> Path:
    """Two 4-frame videos and one image: sorted, a.mp4, b.mp4, c.png."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    write_clip(folder / "a.mp4", clip_a_data.frames[:4])
    write_clip(folder / "b.mp4", clip_a_data.frames[10:14])
    cv2.imwrite(str(folder / "c.png"), cv2.cvtColor(load_still("astronaut"), cv2.COLOR_RGB2BGR))
    return folder


def test_convert_shards_a_folder_and_a_rerun_skips_finished_outputs(
        run_dfk, clips_folder: Path, tiny_swap_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    first = run_dfk("-q", "convert", clips_folder, "-m", tiny_swap_model, "-o", out, "--shard", "1/2")
    assert first.code == 0, first
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.png"]  # positions 0 and 2
    assert "b.mp4" not in first.out  # the table lists this shard's files only
    assert "convert (shard 1/2): 2 of 2 inputs, 5 frames" in first.out
    assert sum(1 for _ in VideoReader(out / "a.mp4")) == 4

    monkeypatch.setenv(SLURM_TASK_VARIABLE, "2")
    second = run_dfk("-q", "convert", clips_folder, "-m", tiny_swap_model, "-o", out, "--shard", "auto/2")
    assert second.code == 0, second
    assert "convert (shard 2/2): 1 of 1 inputs, 4 frames" in second.out and "skipped" not in second.out
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.png"]  # no temp files left behind

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_dfk("-q", "convert", clips_folder, "-m", tiny_swap_model, "-o", out)
    assert again.code == 0, again
    assert "convert: 0 of 3 inputs, 0 frames" in again.out and "3 skipped (output already there)" in again.out
    rows = again.out.splitlines()
    assert [r.split()[0] for r in rows[1:4]] == ["skipped"] * 3
    assert "a.mp4" in rows[1] and "b.mp4" in rows[2] and "1 images" in rows[3]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    # nothing left to do: the model is not even loaded
    nothing = run_dfk("-q", "convert", clips_folder, "-m", tmp_path / "no_model", "-o", out)
    assert nothing.code == 0 and "3 skipped" in nothing.out, nothing

    redo = run_dfk("-q", "convert", clips_folder, "-m", tiny_swap_model, "-o", out, "--shard", "3/3", "--overwrite")
    assert redo.code == 0 and "convert (shard 3/3): 1 of 1 inputs, 1 frames" in redo.out, redo
    assert (out / "c.png").stat().st_mtime_ns != mtimes["c.png"]
    assert {p: (out / p).stat().st_mtime_ns for p in ("a.mp4", "b.mp4")} == {p: mtimes[p] for p in ("a.mp4", "b.mp4")}

    empty = run_dfk("-q", "convert", clips_folder, "-m", tiny_swap_model, "-o", tmp_path / "o2", "--shard", "5/5")
    assert empty.code == 0 and "convert (shard 5/5): 0 of 0 inputs" in empty.out, empty


def test_make_dataset_shards_write_their_own_index_and_the_last_one_the_whole(
        run_dfk, clip_a_data: Clip, clip_b_data: Clip, tiny_swap_model: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_clip(a / "one.mp4", clip_a_data.frames[:4])
    write_clip(b / "two.mp4", clip_b_data.frames[:4])
    root = tmp_path / "set"
    base = ["-q", "make-dataset", "--pair", a, b, "-m", tiny_swap_model, "-o", root]

    first = run_dfk(*base, "--shard", "1/2")  # the work list: (p1, a/one), (p1, b/two)
    assert first.code == 0, first
    assert "make-dataset (shard 1/2): 1 real and 1 fake videos (1 converted now" in first.out
    assert "metadata.json is written once every shard is done" in first.out
    assert not (root / "metadata.json").exists() and not (root / "dataset.csv").exists()
    shard1 = json.loads((root / "metadata.shard-1-of-2.json").read_text())
    assert list(shard1) == ["real/p1_a_one.mp4", f"fake/p1_a_one__{tiny_swap_model.name}_a2b.mp4"]
    rows = list(csv.DictReader((root / "dataset.shard-1-of-2.csv").open()))
    assert [r["path"] for r in rows] == list(shard1)
    assert sorted(p.name for p in (root / "fake").iterdir()) == [Path(k).name for k in shard1 if k.startswith("fake")]

    shard_one_video = root / next(k for k in shard1 if k.startswith("fake"))
    mtime = shard_one_video.stat().st_mtime_ns
    rerun = run_dfk(*base, "--shard", "1/2")
    assert rerun.code == 0 and "(0 converted now, 1 already there)" in rerun.out, rerun
    assert shard_one_video.stat().st_mtime_ns == mtime

    second = run_dfk(*base, "--shard", "2/2")
    assert second.code == 0, second
    assert "every shard is done: metadata.json and dataset.csv list all 4 videos" in second.out
    shard2 = json.loads((root / "metadata.shard-2-of-2.json").read_text())
    assert len(shard2) == 2 and all("_b_two" in key for key in shard2) and not set(shard1) & set(shard2)
    merged = (root / "metadata.json").read_text()
    merged_csv = (root / "dataset.csv").read_text()
    assert json.loads(merged) == {**shard1, **shard2}

    whole = run_dfk(*base)  # the same command without --shard: nothing to make, the same index
    assert whole.code == 0 and "2 real and 2 fake videos (0 converted now, 2 already there)" in whole.out, whole
    assert (root / "metadata.json").read_text() == merged and (root / "dataset.csv").read_text() == merged_csv
