"""Self-blended fakes made on the fly from real faces: ``train.synthetic: sbi`` (``--synthetic sbi``).

Every real track whose faces carry 68 landmarks gets a *twin*: the same faces, labelled fake,
method ``sbi``, in the real video's source group and split, so a twin always lands on the same
side of a train/val/test split as the video it is made from. A twin holds no pixels: whenever one
of its samples is loaded, the faces are read from the face cache and self-blended (``detect.sbi``)
with their landmarks, then preprocessed like any face:

- a frame model's sample is one face, blended by ``self_blend``; a sequence model's sample is T
  faces blended by ``self_blend_sequence``, so the blend stays consistent across the T frames;
- in training, the parameters come from a generator seeded by (run seed, epoch, sample index):
  every epoch sees new fakes, and a run with the same seed sees the same ones (in the main
  process and in DataLoader workers alike; ``data.EpochSampler`` tags each index with its epoch);
- in validation and test, the parameters come from a fixed seed and the faces' file names, so
  every epoch and every run is scored on the same fakes.

Validation and test parts use the dataset's own fakes when they hold any (``--fake``, a dataset's
fakes) and the twins only otherwise. In training, with given fakes too, ``train.synthetic_ratio``
is the share of the fake class's samples that are self-blended (the classes stay balanced);
without given fakes every training fake is self-blended.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from deepfake_cli.detect.layouts import FAKE, REAL
from deepfake_cli.detect.preprocess import FrameStore, prepare_frame
from deepfake_cli.detect.sbi import self_blend, self_blend_sequence
from deepfake_cli.detect.sequences import SequenceRef, positions, train_starts, training_sequences
from deepfake_cli.detect.splits import Partition
from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.media.images import read_image

log = logging.getLogger(__name__)

SBI = "sbi"
EVAL_SEED = 0x5B1  # validation and test fakes: the same in every epoch and run
TWIN_SUFFIX = "#sbi"


MIN_FACE_PIXELS = 8.0  # landmarks spanning less than this (in either direction) cannot outline a face


def usable(points: np.ndarray | None) -> bool:
    """Whether a face's landmarks can be self-blended: 68 points spanning a face, not a dot."""
    return points is not None and len(points) == 68 and float(np.ptp(points, axis=0).min()) >= MIN_FACE_PIXELS


def add_twins(tracks: list[FaceTrack]) -> tuple[list[FaceTrack], list[str]]:
    """``tracks`` followed by one self-blend twin per real track (of its faces with 68 landmarks);
    also the keys of real tracks that got none (no face with usable 68 landmarks)."""
    twins, without = [], []
    for track in tracks:
        if track.label != REAL or track.synthetic:
            continue
        keep = [k for k, points in enumerate(track.landmarks) if usable(points)]
        if not keep:
            without.append(track.key)
            continue
        twins.append(replace(
            track, key=track.key + TWIN_SUFFIX, frames=[track.frames[k] for k in keep],
            files=[track.files[k] for k in keep], boxes=[track.boxes[k] for k in keep],
            landmarks=[track.landmarks[k] for k in keep], label=FAKE, method=SBI, synthetic=SBI,
        ))
    if without:
        log.warning("%d real videos have no face with 68 landmarks; no self-blended fakes from them", len(without))
    return tracks + twins, without


def _given_fakes(tracks: list[FaceTrack], indices: list[int]) -> bool:
    return any(tracks[i].label == FAKE and not tracks[i].synthetic for i in indices)


def _fakes_of(tracks: list[FaceTrack], indices: list[int]) -> str | None:
    """Which fakes a part holds: ``given``, ``sbi``, ``given+sbi`` or None (none)."""
    given = _given_fakes(tracks, indices)
    twins = any(tracks[i].synthetic for i in indices)
    return "+".join(name for name, present in (("given", given), (SBI, twins)) if present) or None


def settle(tracks: list[FaceTrack], partition: Partition) -> tuple[Partition, dict[str, Any]]:
    """``partition`` with the twins dropped from validation and test parts that hold given fakes;
    and which fakes each part uses (for ``metrics.json``)."""
    def evaluated(indices: list[int]) -> list[int]:
        if _given_fakes(tracks, indices):
            return [i for i in indices if not tracks[i].synthetic]
        return indices

    settled = replace(partition, val=evaluated(partition.val), test=evaluated(partition.test))
    fakes: dict[str, Any] = {"train": _fakes_of(tracks, settled.train), "val": _fakes_of(tracks, settled.val)}
    if settled.test:
        fakes["test"] = _fakes_of(tracks, settled.test)
    return settled, fakes


def training_refs(tracks: list[FaceTrack], indices: list[int], frames: int, stride: int, base: int,
                  ratio: float) -> list[SequenceRef]:
    """Class-balanced training samples of ``indices``. With twins and given fakes both present the
    fake class's total is shared between them by ``ratio`` (the self-blended share); otherwise the
    plain ``training_sequences``."""
    twins = [i for i in indices if tracks[i].synthetic]
    given = [i for i in indices if tracks[i].label == FAKE and not tracks[i].synthetic]
    if not twins or not given:
        return training_sequences(tracks, indices, frames, stride, base)
    reals = [i for i in indices if tracks[i].label == REAL]
    target = base * max(len(reals), len(twins) + len(given))
    counts = {i: math.ceil(target / len(reals)) for i in reals}
    counts |= {i: math.ceil(ratio * target / len(twins)) for i in twins}
    counts |= {i: math.ceil((1.0 - ratio) * target / len(given)) for i in given}
    return [SequenceRef(i, positions(len(tracks[i]), start, frames, stride))
            for i in indices if counts.get(i)
            for start in train_starts(len(tracks[i]), frames, stride, counts[i])]


def training_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of training sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return np.random.default_rng([seed % 2**63, epoch, index])


def evaluation_rng(track: FaceTrack, at: tuple[int, ...]) -> np.random.Generator:
    """The fixed generator of a validation/test sample: the faces' file names and positions, not
    the folder they sit in, so a copied face cache gives the same fakes."""
    names = zlib.crc32("/".join(track.files[p].name for p in at).encode())
    return np.random.default_rng([EVAL_SEED, names, *at])


def blended_faces(store: FrameStore, track: FaceTrack, at: tuple[int, ...], rng: np.random.Generator,
                  frame_level: bool) -> np.ndarray:
    """The self-blended, preprocessed faces of ``track`` at positions ``at``: ``C x H x W`` for a
    frame model (one position), ``T x C x H x W`` for a sequence model. Face images are read from
    disk each time (not cached: a fresh fake every epoch)."""
    images = [read_image(track.files[p]) for p in at]
    points = [track.landmarks[p] for p in at]
    if frame_level or len(at) == 1:
        fakes = [self_blend(images[0], points[0], rng).fake]
    else:
        fakes = self_blend_sequence(images, points, rng).fakes
    prepared = [prepare_frame(fake, store.size, store.mode, store.sigma) for fake in fakes]
    return prepared[0] if frame_level else np.stack(prepared)


def describe(tracks: list[FaceTrack], without: list[str], ratio: float) -> dict[str, Any]:
    """The ``synthetic`` block of ``metrics.json``."""
    twins = sum(bool(t.synthetic) for t in tracks)
    given = sum(t.label == FAKE and not t.synthetic for t in tracks)
    return {"kind": SBI, "twins": twins, "given_fakes": given,
            "ratio": ratio if given else 1.0, "reals_without_landmarks": len(without),
            "seeds": {"train": "run seed, epoch, sample index", "val/test": f"fixed ({EVAL_SEED})"}}
