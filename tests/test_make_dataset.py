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


def _short_pair(tmp_path: Path, clip_a_data, clip_b_data) -> tuple[Path, Path]:
    from deepfake_cli.media.synthetic import write_clip

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_clip(a / "one.mp4", clip_a_data.frames[:4])
    write_clip(b / "two.mp4", clip_b_data.frames[:4])
    return a, b


def _second_model(tiny_swap_model: Path, tmp_path: Path, kind: str) -> Path:
    """A copy of the tiny model under another name whose state.json names ``kind`` (the weights
    stay the original autoencoder's: only the recorded kind is under test)."""
    import shutil

    copy = tmp_path / "models" / f"tiny_{kind}"
    shutil.copytree(tiny_swap_model, copy)
    state = json.loads((copy / "state.json").read_text())
    (copy / "state.json").write_text(json.dumps(state | {"kind": kind}))
    return copy


def test_several_models_per_pair_each_make_fakes_recorded_with_name_and_kind(
        run_dfk, clip_a_data, clip_b_data, tiny_swap_model: Path, tmp_path: Path) -> None:
    a, b = _short_pair(tmp_path, clip_a_data, clip_b_data)
    other = _second_model(tiny_swap_model, tmp_path, "gan")
    root = tmp_path / "set"
    result = run_dfk("-q", "make-dataset", "--pair", a, b, "-m", tiny_swap_model, "-m", other, "-o", root)
    assert result.code == 0, result
    assert "2 real and 4 fake videos (4 converted now" in result.out
    rows = list(csv.DictReader((root / "dataset.csv").open()))
    assert list(rows[0]) == ["path", "label", "group", "original", "model", "direction", "kind"]
    fakes = [r for r in rows if r["label"] == "FAKE"]
    assert {(r["model"], r["kind"]) for r in fakes} == {(tiny_swap_model.name, "original"), ("tiny_gan", "gan")}
    assert all((root / r["path"]).is_file() for r in rows)
    metadata = json.loads((root / "metadata.json").read_text())
    gan = [v for v in metadata.values() if v.get("model") == "tiny_gan"]
    assert len(gan) == 2 and all(v["kind"] == "gan" and v["label"] == "FAKE" for v in gan)
    items = read_dataset(root)  # both generators' fakes stay in their source video's group
    assert len({i.group for i in items}) == 2 and sorted(i.label for i in items) == [REAL] * 2 + [FAKE] * 4
    assert {i.method for i in items if i.label == FAKE} == {tiny_swap_model.name, "tiny_gan"}  # per_method keys

    # sharded: every (pair, video) makes all of its models' fakes; the last shard writes the same index
    sharded = tmp_path / "sharded"
    for k in (1, 2):
        shard = run_dfk("-q", "make-dataset", "--pair", a, b, "-m", tiny_swap_model, "-m", other, "-o", sharded,
                        "--shard", f"{k}/2")
        assert shard.code == 0, shard
    assert "every shard is done: metadata.json and dataset.csv list all 6 videos" in shard.out
    assert json.loads((sharded / "metadata.json").read_text()) == metadata
    assert (sharded / "dataset.csv").read_text() == (root / "dataset.csv").read_text()


def test_models_are_assigned_to_pairs_by_prefix_count_or_single_pair(tiny_swap_model: Path, tmp_path: Path) -> None:
    import pytest

    from deepfake_cli.errors import ConfigError, InputError
    from deepfake_cli.make_dataset import assign_models, model_kind

    gan = _second_model(tiny_swap_model, tmp_path, "gan")
    m, g = tiny_swap_model, gan
    assert assign_models(2, [m]) == [[m], [m]]
    assert assign_models(2, [m, g]) == [[m], [g]]
    assert assign_models(1, [m, g]) == [[m, g]]
    assert assign_models(2, [f"1:{m}", f"1:{g}", f"2:{g}"]) == [[m, g], [g]]
    for models, message in (([f"1:{m}", str(g)], "K:MODEL"), ([f"1:{m}"], "no model for pair 2"),
                            ([f"3:{m}", f"1:{m}", f"2:{m}"], "names pair 3"), ([m, g, m], "one per pair"),
                            ([f"1:{m}", f"1:{m}", f"2:{m}"], "two models named")):
        with pytest.raises(ConfigError, match=message):
            assign_models(2, models)
    with pytest.raises(InputError, match="model folder not found"):
        assign_models(1, [m, tmp_path / "missing"])
    assert model_kind(m) == "original" and model_kind(g) == "gan"
    (tmp_path / "cfg_only").mkdir()
    (tmp_path / "cfg_only" / "config.yaml").write_text("model:\n  kind: gan\n")
    assert model_kind(tmp_path / "cfg_only") == "gan" and model_kind(tmp_path) == ""
