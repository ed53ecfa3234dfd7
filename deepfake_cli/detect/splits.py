"""Train/validation splits by source group: tracks of one group never land on opposite sides.

A group is a video on its own unless the dataset layout ties videos together (a DFDC fake and
its ``original``, FF++ fakes and the sources they combine). Groups are split by stratum (groups
holding only real, only fake, or both) so each side gets both classes whenever there are enough.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.errors import InputError

Split = tuple[list[int], list[int]]


def _strata(tracks: list[FaceTrack], seed: int) -> list[list[str]]:
    """Group names per stratum (by the set of labels a group holds), each list shuffled by ``seed``."""
    labels: dict[str, set[int | None]] = defaultdict(set)
    for track in tracks:
        labels[track.group].add(track.label)
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


def _indices(tracks: list[FaceTrack], groups: set[str]) -> Split:
    inside = [i for i, t in enumerate(tracks) if t.group in groups]
    outside = [i for i, t in enumerate(tracks) if t.group not in groups]
    return outside, inside


def given_split(tracks: list[FaceTrack]) -> Split | None:
    """The dataset's own split when it names a validation (or else test) part; None otherwise.

    An unmarked track takes the split of its group (train if the group has none); a group whose
    tracks name different splits is an error.
    """
    per_group: dict[str, set[str]] = defaultdict(set)
    for track in tracks:
        if track.split is not None:
            per_group[track.group].add(track.split)
    for group, splits in per_group.items():
        if len(splits) > 1:
            raise InputError(f"videos of one source group are marked {', '.join(sorted(splits))}; "
                             "a fake and its original must share a split", group)
    split_of = [next(iter(per_group.get(t.group, {"train"}))) for t in tracks]
    held_out = "val" if "val" in split_of else "test" if "test" in split_of else None
    if held_out is None:
        return None
    train = [i for i, split in enumerate(split_of) if split == "train"]
    val = [i for i, split in enumerate(split_of) if split == held_out]
    return train, val


def holdout_split(tracks: list[FaceTrack], val_fraction: float, seed: int) -> Split:
    """About ``val_fraction`` of the groups of every stratum go to validation (at least one
    when a stratum has two or more groups, never all of them)."""
    held: set[str] = set()
    for names in _strata(tracks, seed):
        if len(names) >= 2:
            count = min(max(round(len(names) * val_fraction), 1), len(names) - 1)
            held.update(names[:count])
    if not held:
        raise InputError("too few videos to hold any out for validation; add videos or a dataset split")
    return _indices(tracks, held)


def kfold_splits(tracks: list[FaceTrack], folds: int, seed: int) -> list[Split]:
    """``folds`` (train, validation) pairs; each group is validated in exactly one fold."""
    for label, name in ((0, "real"), (1, "fake")):
        groups = {t.group for t in tracks if t.label == label}
        if len(groups) < folds:
            raise InputError(f"--folds {folds} needs at least {folds} source groups with {name} videos; "
                             f"found {len(groups)}")
    assignment: dict[str, int] = {}
    dealt = 0
    for names in _strata(tracks, seed):  # dealt round-robin, continuing across strata for even folds
        for name in names:
            assignment[name] = dealt % folds
            dealt += 1
    return [_indices(tracks, {g for g, f in assignment.items() if f == k}) for k in range(folds)]
