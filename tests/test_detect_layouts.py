"""Dataset layouts (folders, DFDC, FaceForensics++, CSV), path safety and group-aware splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake_cli.detect.layouts import FAKE, REAL, from_paths, read_dataset
from deepfake_cli.detect.splits import given_split, holdout_split, kfold_splits, plan_split
from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.errors import InputError


def touch(root: Path, *names: str) -> None:
    """Create placeholder files (layout parsing never decodes them)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0")


def by_name(items: list) -> dict[str, object]:
    return {item.path.name: item for item in items}


def test_real_and_fake_folders(tmp_path: Path) -> None:
    touch(tmp_path, "real/a.mp4", "real/sub/b.avi", "fake/c.mp4", "fake/notes.txt")
    items = by_name(read_dataset(tmp_path))
    assert set(items) == {"a.mp4", "b.avi", "c.mp4"}
    assert items["a.mp4"].label == REAL and items["b.avi"].label == REAL and items["c.mp4"].label == FAKE


def test_dfdc_groups_fakes_with_their_original_and_keeps_splits(tmp_path: Path) -> None:
    touch(tmp_path, "orig.mp4", "fake1.mp4", "fake2.mp4", "other.mp4")
    (tmp_path / "metadata.json").write_text(json.dumps({
        "orig.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake1.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
        "fake2.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
        "other.mp4": {"label": "REAL", "split": "test"},
        "gone.mp4": {"label": "FAKE", "original": "other.mp4"},
    }))
    items = by_name(read_dataset(tmp_path))
    assert set(items) == {"orig.mp4", "fake1.mp4", "fake2.mp4", "other.mp4"}  # gone.mp4 has no file
    assert items["fake1.mp4"].label == FAKE and items["orig.mp4"].label == REAL
    assert items["fake1.mp4"].group == items["fake2.mp4"].group == items["orig.mp4"].group
    assert items["other.mp4"].group != items["orig.mp4"].group and items["other.mp4"].split == "test"


def test_dfdc_parts_in_sub_folders(tmp_path: Path) -> None:
    for part in ("part0", "part1"):
        touch(tmp_path, f"{part}/r.mp4", f"{part}/f.mp4")
        (tmp_path / part / "metadata.json").write_text(json.dumps({
            "r.mp4": {"label": "REAL"}, "f.mp4": {"label": "FAKE", "original": "r.mp4"}}))
    items = read_dataset(tmp_path)
    assert len(items) == 4 and len({i.group for i in items}) == 2


def test_dfdc_records_naming_one_group_and_hard_links_of_one_file_share_a_group(tmp_path: Path) -> None:
    import os

    touch(tmp_path, "r1.mp4", "f1.mp4", "r2.mp4", "f2.mp4", "r3.mp4", "r4.mp4")
    os.link(tmp_path / "r3.mp4", tmp_path / "r3_again.mp4")  # one video listed twice (make-dataset's real/)
    (tmp_path / "metadata.json").write_text(json.dumps({
        "r1.mp4": {"label": "REAL", "group": "p1"}, "f1.mp4": {"label": "FAKE", "original": "r1.mp4", "group": "p1"},
        "r2.mp4": {"label": "REAL", "group": "p1"}, "f2.mp4": {"label": "FAKE", "original": "r2.mp4", "group": "p1"},
        "r3.mp4": {"label": "REAL"}, "r3_again.mp4": {"label": "REAL"}, "r4.mp4": {"label": "REAL"}}))
    items = by_name(read_dataset(tmp_path))
    assert len({items[n].group for n in ("r1.mp4", "f1.mp4", "r2.mp4", "f2.mp4")}) == 1
    assert items["r3.mp4"].group == items["r3_again.mp4"].group == "r3.mp4"  # named by a path, not an inode
    assert len({i.group for i in items.values()}) == 3


def test_faceforensics_groups_by_source_ids_and_reads_official_splits(tmp_path: Path) -> None:
    touch(tmp_path,
          "original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c23/videos/003.mp4",
          "original_sequences/youtube/c23/videos/100.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
          "manipulated_sequences/Face2Face/c23/videos/003_000.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/100_101.mp4")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.json").write_text(json.dumps([["000", "003"]]))
    (tmp_path / "splits" / "test.json").write_text(json.dumps([["100", "101"]]))
    items = read_dataset(tmp_path)
    labels = {(i.path.parent.parent.parent.name, i.path.stem): i for i in items}
    assert labels[("youtube", "000")].label == REAL and labels[("Deepfakes", "000_003")].label == FAKE
    group = labels[("youtube", "000")].group
    assert labels[("youtube", "003")].group == group == labels[("Face2Face", "003_000")].group
    assert labels[("Deepfakes", "100_101")].group == labels[("youtube", "100")].group != group
    assert labels[("youtube", "100")].split == "test" and labels[("Deepfakes", "000_003")].split == "train"
    assert labels[("Face2Face", "003_000")].method == "Face2Face" and labels[("youtube", "000")].method is None
    # FF++'s methods fall in two families: Face2Face reenacts, Deepfakes swaps
    assert labels[("Face2Face", "003_000")].family == "reenact" and labels[("Deepfakes", "000_003")].family == "swap"
    assert labels[("youtube", "000")].family is None


def test_csv_with_header_groups_and_splits(tmp_path: Path) -> None:
    touch(tmp_path, "v/a.mp4", "v/b.mp4", "v/c.mp4")
    (tmp_path / "labels.csv").write_text("path,label,group,split\nv/a.mp4,real,g1,train\n"
                                         "v/b.mp4,FAKE,g1,train\nv/c.mp4,1,,val\n")
    items = by_name(read_dataset(tmp_path / "labels.csv"))
    assert [items[n].label for n in ("a.mp4", "b.mp4", "c.mp4")] == [REAL, FAKE, FAKE]
    assert items["a.mp4"].group == items["b.mp4"].group == "g1" and items["c.mp4"].split == "val"
    assert {i.path.name for i in read_dataset(tmp_path)} == {"a.mp4", "b.mp4", "c.mp4"}  # folder with one CSV


def test_fake_methods_and_families_from_dfdc_metadata_and_make_dataset_csv(tmp_path: Path) -> None:
    touch(tmp_path, "dfdc/r.mp4", "dfdc/f.mp4", "dfdc/g.mp4", "csv/r.mp4", "csv/f.mp4", "csv/s.mp4")
    (tmp_path / "dfdc" / "metadata.json").write_text(json.dumps({
        "r.mp4": {"label": "REAL"}, "f.mp4": {"label": "FAKE", "original": "r.mp4", "model": "alice_bob"},
        "g.mp4": {"label": "FAKE", "original": "r.mp4", "method": "gan", "family": "Reenact"}}))
    items = by_name(read_dataset(tmp_path / "dfdc"))
    assert (items["r.mp4"].method, items["f.mp4"].method, items["g.mp4"].method) == (None, "alice_bob", "gan")
    assert (items["r.mp4"].family, items["f.mp4"].family, items["g.mp4"].family) == (None, None, "reenact")
    (tmp_path / "csv" / "dataset.csv").write_text("path,label,group,original,model,direction,kind,family\n"
                                                  "r.mp4,REAL,r.mp4,,,,,\nf.mp4,FAKE,r.mp4,r.mp4,m1,a2b,gan,swap\n"
                                                  "s.mp4,FAKE,s.mp4,,faces,,,synth\n")
    items = by_name(read_dataset(tmp_path / "csv"))
    assert items["r.mp4"].method is None and items["f.mp4"].method == "m1"
    assert (items["r.mp4"].family, items["f.mp4"].family, items["s.mp4"].family) == (None, "swap", "synth")
    (tmp_path / "csv" / "dataset.csv").write_text("path,label,family\nf.mp4,FAKE,morph\n")
    with pytest.raises(InputError, match="family must be one of swap, reenact, synth"):
        read_dataset(tmp_path / "csv")


def test_csv_without_header(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "b.mp4")
    (tmp_path / "list.csv").write_text("a.mp4,REAL\nb.mp4,FAKE\n")
    assert [i.label for i in read_dataset(tmp_path / "list.csv")] == [REAL, FAKE]


@pytest.mark.parametrize("entry", ["../outside.mp4", "sub/../../outside.mp4", "/etc/passwd"])
def test_paths_leaving_the_root_are_refused(tmp_path: Path, entry: str) -> None:
    root = tmp_path / "root"
    touch(tmp_path, "outside.mp4", "root/ok.mp4")
    (root / "labels.csv").write_text(f"path,label\nok.mp4,real\n{entry},fake\n")
    with pytest.raises(InputError, match="dataset root"):
        read_dataset(root / "labels.csv")
    (root / "labels.csv").unlink()
    (root / "metadata.json").write_text(json.dumps({"ok.mp4": {"label": "REAL"}, entry: {"label": "FAKE"}}))
    with pytest.raises(InputError, match="dataset root"):
        read_dataset(root)


def test_dfdc_original_outside_the_root_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "f.mp4")
    (tmp_path / "metadata.json").write_text(json.dumps({"f.mp4": {"label": "FAKE", "original": "../../x.mp4"}}))
    with pytest.raises(InputError, match="leaves the dataset root"):
        read_dataset(tmp_path)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "elsewhere/secret.mp4", "root/real/a.mp4")
    (tmp_path / "root" / "fake").mkdir()
    (tmp_path / "root" / "fake" / "link.mp4").symlink_to(tmp_path / "elsewhere" / "secret.mp4")
    with pytest.raises(InputError, match="leaves the dataset root"):
        read_dataset(tmp_path / "root")


def test_unknown_layout_bad_label_and_missing_class_are_clear_errors(tmp_path: Path) -> None:
    touch(tmp_path, "a/x.mp4")
    with pytest.raises(InputError, match="unknown dataset layout"):
        read_dataset(tmp_path / "a")
    (tmp_path / "a" / "l.csv").write_text("path,label\nx.mp4,maybe\n")
    with pytest.raises(InputError, match="REAL or FAKE"):
        read_dataset(tmp_path / "a")
    with pytest.raises(InputError, match="no fake inputs"):
        from_paths([tmp_path / "a"], [])
    with pytest.raises(InputError, match="not found"):
        from_paths([tmp_path / "missing"], [tmp_path / "a"])
    with pytest.raises(InputError, match="both real and fake"):
        from_paths([tmp_path / "a"], [tmp_path / "a" / "x.mp4"])
    touch(tmp_path, "b/y.mp4")
    assert len(from_paths([tmp_path / "a", tmp_path / "a" / "x.mp4"], [tmp_path / "b"])) == 2  # repeats dropped


def tracks(spec: list[tuple[str, int, str | None]]) -> list[FaceTrack]:
    """Fake tracks from (group, label, split) triples."""
    return [FaceTrack(key=f"v{i}", source=f"v{i}", frames=[0], files=[Path("x.png")], boxes=[[0, 0, 1, 1]],
                      label=label, group=group, split=split) for i, (group, label, split) in enumerate(spec)]


def groups_of(items: list[FaceTrack], indices: list[int]) -> set[str]:
    return {items[i].group for i in indices}


def test_holdout_keeps_groups_together_and_both_classes_on_each_side() -> None:
    spec = [(f"g{k}", 0, None) for k in range(6)] + [(f"g{k}", 1, None) for k in range(6)]
    spec += [(f"h{k}", 1, None) for k in range(4)]
    items = tracks(spec)
    train, val = holdout_split(items, 0.25, seed=0)
    assert not groups_of(items, train) & groups_of(items, val)
    assert sorted(train + val) == list(range(len(items)))
    for side in (train, val):
        assert {items[i].label for i in side} == {0, 1}
    assert holdout_split(items, 0.25, seed=0) == (train, val)  # deterministic


def test_kfold_validates_each_group_once() -> None:
    items = tracks([(f"g{k}", k % 2, None) for k in range(10)] + [(f"g{k}", 1, None) for k in range(0, 10, 2)])
    folds = kfold_splits(items, 3, seed=1)
    seen = [i for _, val in folds for i in val]
    assert sorted(seen) == list(range(len(items)))
    for train, val in folds:
        assert not groups_of(items, train) & groups_of(items, val)
    with pytest.raises(InputError, match="--folds 9"):
        kfold_splits(items, 9, seed=1)


def test_dataset_split_is_used_and_must_agree_within_a_group() -> None:
    items = tracks([("a", 0, "train"), ("a", 1, "train"), ("b", 0, "val"), ("b", 1, None), ("c", 1, "test")])
    given = given_split(items)
    assert (given.train, given.val, given.test) == ([0, 1], [2, 3], [4])  # track 3 follows its group to val
    assert given.val_from == "dataset split" and given.test_from == "dataset split"
    assert given_split(tracks([("a", 0, None), ("b", 1, None)])) is None
    with pytest.raises(InputError, match="must share a split"):
        given_split(tracks([("a", 0, "train"), ("a", 1, "val")]))


def test_without_a_val_split_validation_is_carved_from_train_by_group_never_from_test() -> None:
    spec = [(f"g{k}", label, "train") for k in range(8) for label in (0, 1)]  # a real and its fake per group
    spec += [(f"t{k}", label, "test") for k in range(3) for label in (0, 1)]
    items = tracks(spec)
    part = plan_split(items, 0.25, 0.0, seed=0)
    assert part.val_from == "carved from train" and part.test_from == "dataset split"
    assert part.test == list(range(16, 22))
    assert sorted(part.train + part.val) == list(range(16)) and part.val
    assert not groups_of(items, part.train) & groups_of(items, part.val)  # a fake stays with its original
    assert {items[i].label for i in part.val} == {0, 1}
    flipped = tracks([(g, 1 - label if split == "test" else label, split) for g, label, split in spec])
    assert plan_split(flipped, 0.25, 0.0, seed=0) == part  # test labels cannot move the split


def test_without_any_split_test_fraction_holds_out_groups_before_validation() -> None:
    items = tracks([(f"g{k}", label, None) for k in range(10) for label in (0, 1)])
    assert plan_split(items, 0.2, 0.0, seed=0).test == []
    part = plan_split(items, 0.2, 0.2, seed=0)
    sides = [groups_of(items, side) for side in (part.train, part.val, part.test)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sorted(part.train + part.val + part.test) == list(range(20))
    assert part.val_from == "held out" and part.test_from == "held out"


def test_kfold_stays_inside_the_pool_it_is_given() -> None:
    items = tracks([(f"g{k}", label, None) for k in range(6) for label in (0, 1)])
    pool = list(range(8))
    for train, val in kfold_splits(items, 2, seed=0, among=pool):
        assert set(train + val) == set(pool)
