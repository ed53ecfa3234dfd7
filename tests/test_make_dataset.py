"""`dfk make-dataset`: labelled real/fake videos that train-detect reads with groups intact."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

from deepfake_cli.detect.layouts import FAKE, REAL, read_dataset
from deepfake_cli.media.video import VideoReader, ffmpeg_exe


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
    assert len({i.group for i in items}) == 1 and {r["group"] for r in rows} == {"p1"}  # a pair is one group

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
    assert list(rows[0]) == ["path", "label", "group", "original", "model", "direction", "kind", "family"]
    fakes = [r for r in rows if r["label"] == "FAKE"]
    assert {(r["model"], r["kind"]) for r in fakes} == {(tiny_swap_model.name, "original"), ("tiny_gan", "gan")}
    assert all((root / r["path"]).is_file() for r in rows)
    metadata = json.loads((root / "metadata.json").read_text())
    gan = [v for v in metadata.values() if v.get("model") == "tiny_gan"]
    assert len(gan) == 2 and all(v["kind"] == "gan" and v["label"] == "FAKE" for v in gan)
    items = read_dataset(root)  # both generators' fakes stay in their pair's group
    assert len({i.group for i in items}) == 1 and sorted(i.label for i in items) == [REAL] * 2 + [FAKE] * 4
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
    from deepfake_cli.make_dataset import WARP, assign_models, generator_of

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
    assert assign_models(1, [m, WARP]) == [[m, Path(WARP)]]  # the reenactment baseline needs no folder
    assert (generator_of(m).family, generator_of(m).kind, generator_of(g).kind) == ("swap", "original", "gan")
    assert (generator_of(Path(WARP)).family, generator_of(Path(WARP)).kind) == ("reenact", "warp")
    (tmp_path / "cfg_only").mkdir()
    (tmp_path / "cfg_only" / "config.yaml").write_text("model:\n  kind: gan\n")
    assert generator_of(tmp_path / "cfg_only").kind == "gan" and generator_of(tmp_path).kind == ""
    assert generator_of(tmp_path).family == "swap"  # swap models from before families were recorded


def test_one_dataset_holds_swaps_reenactments_and_synthesised_faces_each_labelled_with_its_family(
        run_dfk, clip_a: Path, clip_b: Path, tiny_swap_model: Path, tmp_path: Path) -> None:
    import numpy as np

    from deepfake_cli.media.images import write_image
    from deepfake_cli.synth import facegan_config, train_facegan

    faces = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for i in range(8):
        write_image(faces / f"face_{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    facegan = tmp_path / "facegan"
    train_facegan([faces], facegan, facegan_config(facegan, "tiny", overrides=["train.iterations=2"]), device="cpu")

    root = tmp_path / "dataset"
    result = run_dfk("-q", "make-dataset", "--pair", clip_a, clip_b, "-m", tiny_swap_model, "-m", "warp",
                     "-m", facegan, "-o", root)
    assert result.code == 0, result
    rows = list(csv.DictReader((root / "dataset.csv").open()))
    fakes = [r for r in rows if r["label"] == "FAKE"]
    assert sorted((r["family"], r["model"], r["kind"], r["direction"]) for r in fakes) == sorted(
        [("swap", tiny_swap_model.name, "original", d) for d in ("a2b", "b2a")]
        + [("reenact", "warp", "warp", d) for d in ("a2b", "b2a")]
        + [("synth", "facegan", "gan", "")] * 2)
    for row in fakes:
        video = root / row["path"]
        assert sum(1 for _ in VideoReader(video)) == 30  # as many frames as the real video
        probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True)
        assert "Synthetic media (deepfake)" in probe.stderr  # every family's fakes are labelled
    items = read_dataset(root)
    assert {i.family for i in items if i.label == FAKE} == {"swap", "reenact", "synth"}
    assert {i.family for i in items if i.label == REAL} == {None}
    assert len({i.group for i in items}) == 1  # every fake of the pair stays in the pair's group


def _fast_people(tmp_path: Path, monkeypatch) -> tuple[list[tuple[Path, Path]], dict[tuple[int, str], str], Path]:
    """Five pairs of placeholder videos (never decoded) and a plain model folder; ``convert`` is
    replaced by one that writes a placeholder fake, so no swap model trains or runs. Pair 3 gives
    alice again (through a symlink to her folder) and pair 4 gives dave's folder, which holds the
    very file pair 2 gave as dave: 1+3 and 2+4 share people, pair 5 shares none."""
    import deepfake_cli.make_dataset as make

    people = tmp_path / "people"
    for person, count in (("alice", 2), ("bob", 1), ("carol", 1), ("dave", 2), ("eve", 1), ("frank", 1),
                          ("gina", 2), ("hank", 1)):
        (people / person).mkdir(parents=True)
        for k in range(count):
            (people / person / f"{person[0]}{k}.mp4").write_bytes(person.encode())
    (tmp_path / "alias").symlink_to(people / "alice")
    pairs = [(people / "alice", people / "bob"), (people / "carol", people / "dave" / "d0.mp4"),
             (people / "eve", tmp_path / "alias"), (people / "frank", people / "dave"),
             (people / "gina", people / "hank")]
    who = {(k, side): ("alice" if folder.name == "alias" else (folder if folder.is_dir() else folder.parent).name)
           for k, pair in enumerate(pairs, start=1) for side, folder in zip("ab", pair)}
    (tmp_path / "model").mkdir()

    def fake_convert(video, output, model, options, progress=True):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(b"fake of " + Path(video).read_bytes())

    monkeypatch.setattr(make, "convert", fake_convert)
    return pairs, who, tmp_path / "model"


def test_a_pair_is_one_source_group_and_pairs_sharing_a_person_merge(tmp_path: Path, monkeypatch) -> None:
    from deepfake_cli.make_dataset import make_dataset
    from deepfake_cli.media.shards import Shard

    pairs, _, model = _fast_people(tmp_path, monkeypatch)
    summary = make_dataset(pairs, [model], tmp_path / "set", progress=False)
    rows = list(csv.DictReader((tmp_path / "set" / "dataset.csv").open()))
    assert len(rows) == 2 * 14 and len(summary.entries) == len(rows)
    by_pair: dict[int, set[str]] = {}
    for row in rows:
        by_pair.setdefault(int(row["path"].split("/")[1].split("_")[0][1:]), set()).add(row["group"])
    assert by_pair == {1: {"p1"}, 2: {"p2"}, 3: {"p1"}, 4: {"p2"}, 5: {"p5"}}  # reals and fakes, a2b and b2a
    assert {r["direction"] for r in rows if r["path"].startswith("fake/p5_")} == {"a2b", "b2a"}
    metadata = json.loads((tmp_path / "set" / "metadata.json").read_text())
    assert all(metadata[r["path"]]["group"] == r["group"] for r in rows)

    # shards know the whole pair list: the same groups as one unsharded run
    for k in (1, 2, 3):
        make_dataset(pairs, [model], tmp_path / "sharded", progress=False, shard=Shard(k, 3))
    assert (tmp_path / "sharded" / "dataset.csv").read_text() == (tmp_path / "set" / "dataset.csv").read_text()
    shard_rows = list(csv.DictReader((tmp_path / "sharded" / "dataset.shard-2-of-3.csv").open()))
    assert shard_rows and all(r in rows for r in shard_rows)


def test_train_detect_splits_never_put_one_person_on_two_sides(tmp_path: Path, monkeypatch) -> None:
    """End to end: make-dataset -> read_dataset (train-detect --dataset) -> tracks -> plan_split and
    kfold_splits. A fake holds both people of its pair."""
    import re

    from deepfake_cli.detect.splits import kfold_splits, plan_split
    from deepfake_cli.detect.tracks import FaceTrack
    from deepfake_cli.make_dataset import make_dataset

    pairs, who, model = _fast_people(tmp_path, monkeypatch)
    root = tmp_path / "set"
    make_dataset(pairs, [model], root, progress=False)

    def check(items) -> None:
        people = []
        for item in items:
            pair, side = re.match(r"p(\d+)_([ab])_", item.path.name).groups()
            people.append({who[(int(pair), side)]} if item.label == REAL else {who[(int(pair), s)] for s in "ab"})
        tracks = [FaceTrack(key=str(i.path), source=str(i.path), frames=[0], files=[Path("x.png")],
                            boxes=[[0, 0, 1, 1]], label=i.label, group=i.group, split=i.split) for i in items]

        def disjoint(*sides: list[int]) -> None:
            seen = [set().union(*(people[i] for i in side)) for side in sides]
            assert all(seen) and all(not seen[x] & seen[y] for x in range(len(seen)) for y in range(x + 1, len(seen)))

        part = plan_split(tracks, 0.3, 0.3, seed=0)
        disjoint(part.train, part.val, part.test)
        for seed in range(4):
            for train, val in kfold_splits(tracks, 3, seed=seed):
                disjoint(train, val)

    items = read_dataset(root)
    assert len({i.group for i in items}) == 3
    check(items)

    # an older make-dataset output without "group": the reader joins pairs by their p<K> names and
    # pairs sharing a video by the hard links in real/
    metadata = json.loads((root / "metadata.json").read_text())
    (root / "metadata.json").write_text(json.dumps({k: {f: v for f, v in r.items() if f != "group"}
                                                    for k, r in metadata.items()}))
    old = read_dataset(root)
    assert [(i.path, i.group) for i in old] == [(i.path, i.group) for i in items]
    check(old)
