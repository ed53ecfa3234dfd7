"""Sequence sampling: which T faces of a track form one model input, and how many per video.

A sequence takes ``frames`` faces of a track, ``stride`` faces apart. A track shorter than one
sequence is padded by repeating its last face (a single image becomes a still sequence of T copies).
Training balances the classes the way the seed did: rather than throwing data away, every video
of the minority class contributes proportionally more sequences.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from deepfake_cli.detect.tracks import FaceTrack


@dataclass(frozen=True)
class SequenceRef:
    """One sequence: the index of its track and the positions of its faces in that track."""

    track: int
    positions: tuple[int, ...]


def span(frames: int, stride: int) -> int:
    """How many consecutive faces of a track one sequence covers."""
    return (frames - 1) * stride + 1


def positions(length: int, start: int, frames: int, stride: int) -> tuple[int, ...]:
    """The face positions of the sequence starting at ``start``; past the end the last face repeats."""
    return tuple(min(start + k * stride, length - 1) for k in range(frames))


def eval_starts(length: int, frames: int, stride: int, limit: int = 0) -> list[int]:
    """Non-overlapping sequence starts covering the whole track (the last one ends on the last
    face); thinned evenly to ``limit`` when that is positive."""
    width = span(frames, stride)
    if length <= width:
        return [0]
    starts = list(range(0, length - width + 1, width))
    if starts[-1] + width < length:
        starts.append(length - width)
    if 0 < limit < len(starts):
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, limit).round()]
    return starts


def train_starts(length: int, frames: int, stride: int, count: int) -> list[int]:
    """``count`` starts spread evenly over every possible start (overlaps allowed); when a track
    has fewer distinct starts than ``count``, starts repeat (plain oversampling)."""
    choices = max(length - span(frames, stride) + 1, 1)
    if count <= choices:
        return [int(i) for i in np.linspace(0, choices - 1, count).round()]
    return [i % choices for i in range(count)]


def per_video_counts(labels: list[int], base: int) -> dict[int, int]:
    """Sequences per video for each class so both classes get about the same total: the
    majority class gets ``base`` per video, the minority ``base * n_majority / n_minority``."""
    videos = Counter(labels)
    target = base * max(videos.values())
    return {label: math.ceil(target / n) for label, n in videos.items()}


def training_sequences(tracks: list[FaceTrack], indices: list[int], frames: int, stride: int,
                       base: int) -> list[SequenceRef]:
    """Class-balanced training sequences from the tracks at ``indices``."""
    labels = {i: _label(tracks[i]) for i in indices}
    counts = per_video_counts(list(labels.values()), base)
    return [
        SequenceRef(i, positions(len(tracks[i]), start, frames, stride))
        for i in indices
        for start in train_starts(len(tracks[i]), frames, stride, counts[labels[i]])
    ]


def _label(track: FaceTrack) -> int:
    if track.label is None:
        raise ValueError(f"track {track.key} has no label")
    return track.label


def evaluation_sequences(tracks: list[FaceTrack], indices: list[int], frames: int, stride: int,
                         limit: int = 0) -> list[SequenceRef]:
    """Non-overlapping sequences covering each track at ``indices`` (at most ``limit`` per track)."""
    return [
        SequenceRef(i, positions(len(tracks[i]), start, frames, stride))
        for i in indices
        for start in eval_starts(len(tracks[i]), frames, stride, limit)
    ]
