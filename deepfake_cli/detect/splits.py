"""Train / validation / test partitions by source group: tracks of one group never land on two sides.

A group is a video on its own unless the dataset layout ties videos together (a DFDC fake and
its ``original``, FF++ fakes and the sources they combine). Groups are split by stratum (groups
holding only real, only fake, or both) so each side gets both classes whenever there are enough.

The protocol (``plan_split``):

- validation picks the epoch and the decision threshold; the test part picks nothing and is only
  scored once training is over;
- a dataset's own ``val`` split is the validation part; without one, validation groups are carved
  out of the training groups (``train.val_fraction``) -- never taken from ``test``;
- a dataset's own ``test`` split is the test part; without one, ``train.test_fraction`` of the
  groups is held out for testing first (0 = no test part);
- ``--folds K`` cross-validates over every group outside the test part.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.errors import InputError

Split = tuple[list[int], list[int]]  # (kept, held out) indices into the tracks


@dataclass(frozen=True)
class Partition:
    """Indices into the tracks of each part, and where the validation and test parts came from."""

    train: list[int]
    val: list[int]
    test: list[int] = field(default_factory=list)
    val_from: str = "held out"  # dataset split | carved from train | held out | fold k/K
    test_from: str | None = None  # dataset split | held out | None (no test part)

    def describe(self) -> dict[str, str | None]:
        """The protocol as recorded in ``metrics.json``."""
        return {"val": self.val_from, "test": self.test_from}


def _strata(tracks: list[FaceTrack], seed: int, among: list[int]) -> list[list[str]]:
    """Group names per stratum (by the set of labels a group holds), each list shuffled by ``seed``."""
    labels: dict[str, set[int | None]] = defaultdict(set)
    for i in among:
        labels[tracks[i].group].add(tracks[i].label)
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for group in sorted(labels):
        strata[tuple(sorted(x for x in labels[group] if x is not None))].append(group)
    rng = np.random.default_rng(seed)
    shuffled = []
    for key in sorted(strata):
        names = strata[key]
        rng.shuffle(names)
        shuffled.append(names)
    return shuffled


def _indices(tracks: list[FaceTrack], among: list[int], groups: set[str]) -> Split:
    inside = [i for i in among if tracks[i].group in groups]
    outside = [i for i in among if tracks[i].group not in groups]
    return outside, inside


def _everything(tracks: list[FaceTrack], among: list[int] | None) -> list[int]:
    return list(range(len(tracks))) if among is None else sorted(among)


def dataset_splits(tracks: list[FaceTrack]) -> list[str | None]:
    """The split each track takes from the dataset: its own, else its group's; None when the group
    names none. A group whose tracks name different splits is an error."""
    per_group: dict[str, set[str]] = defaultdict(set)
    for track in tracks:
        if track.split is not None:
            per_group[track.group].add(track.split)
    for group, splits in per_group.items():
        if len(splits) > 1:
            raise InputError(f"videos of one source group are marked {', '.join(sorted(splits))}; "
                             "a fake and its original must share a split", group)
    return [next(iter(per_group[t.group])) if per_group.get(t.group) else None for t in tracks]


def given_split(tracks: list[FaceTrack], val_fraction: float = 0.2, seed: int = 0) -> Partition | None:
    """The dataset's own partition when it names a ``val`` or ``test`` part; None otherwise.

    Unmarked groups train. Without a ``val`` part, validation is carved out of the training
    groups by ``holdout_split``; the test part is never used for validation.
    """
    marked = dataset_splits(tracks)
    if "val" not in marked and "test" not in marked:
        return None
    test = [i for i, split in enumerate(marked) if split == "test"]
    test_from = "dataset split" if test else None
    if "val" in marked:
        train = [i for i, split in enumerate(marked) if split in ("train", None)]
        val = [i for i, split in enumerate(marked) if split == "val"]
        return Partition(train, val, test, "dataset split", test_from)
    pool = [i for i, split in enumerate(marked) if split != "test"]
    train, val = holdout_split(tracks, val_fraction, seed, among=pool)
    return Partition(train, val, test, "carved from train", test_from)


def plan_split(tracks: list[FaceTrack], val_fraction: float, test_fraction: float, seed: int) -> Partition:
    """Train / val / test indices by the protocol in the module docstring."""
    given = given_split(tracks, val_fraction, seed)
    if given is not None:
        return given
    pool, test = list(range(len(tracks))), []
    if test_fraction > 0:
        pool, test = holdout_split(tracks, test_fraction, seed + 1, what="testing")
    train, val = holdout_split(tracks, val_fraction, seed, among=pool)
    return Partition(train, val, test, "held out", "held out" if test else None)


def holdout_split(tracks: list[FaceTrack], fraction: float, seed: int, among: list[int] | None = None,
                  what: str = "validation") -> Split:
    """About ``fraction`` of the groups of every stratum among ``among`` (default: all tracks) are
    held out (at least one when a stratum has two or more groups, never all of them)."""
    indices = _everything(tracks, among)
    held: set[str] = set()
    for names in _strata(tracks, seed, indices):
        if len(names) >= 2:
            count = min(max(round(len(names) * fraction), 1), len(names) - 1)
            held.update(names[:count])
    if not held:
        raise InputError(f"too few videos to hold any out for {what}; add videos or a dataset split")
    return _indices(tracks, indices, held)


def kfold_splits(tracks: list[FaceTrack], folds: int, seed: int, among: list[int] | None = None) -> list[Split]:
    """``folds`` (train, validation) pairs over ``among`` (default: all tracks); each group is
    validated in exactly one fold."""
    indices = _everything(tracks, among)
    for label, name in ((0, "real"), (1, "fake")):
        groups = {tracks[i].group for i in indices if tracks[i].label == label}
        if len(groups) < folds:
            raise InputError(f"--folds {folds} needs at least {folds} source groups with {name} videos "
                             f"outside the test part; found {len(groups)}")
    assignment: dict[str, int] = {}
    dealt = 0
    for names in _strata(tracks, seed, indices):  # dealt round-robin, continuing across strata for even folds
        for name in names:
            assignment[name] = dealt % folds
            dealt += 1
    return [_indices(tracks, indices, {g for g, f in assignment.items() if f == k}) for k in range(folds)]
