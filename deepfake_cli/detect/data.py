"""The detector's data path: a torch ``Dataset`` of uint8 face samples and its ``DataLoader``.

Samples stay uint8 all the way to the device (a quarter of float32's bytes over the bus): on CUDA
the loader pins its batches and they are copied with ``non_blocking=True``, then the model
normalises them there (``DetectorNet.normalise``). Loading and preprocessing (PNG decode, resize,
Canny) run in ``train.workers`` worker processes; with ``train.cache_frames`` the faces are
preprocessed once in the main process before the workers start, and the workers read that cache.

A self-blend twin's samples (``detect.synthetic``) are made when loaded: in training from a
generator seeded by (seed, epoch, index), the epoch coming with the index from ``EpochSampler``
(so persistent workers need no state from the main process); in evaluation from a fixed seed.
With ``train.augment: quality`` every training sample, real or fake, is then degraded the same
way (``detect.augment``, seeded alike); evaluation samples never are.

Under torchrun (``ranks > 1``) every rank draws the same shuffled order of the epoch (the same
seeded generator) and trains on its own share of it (``ShardSampler``, like torch's
``DistributedSampler``): the tags stay the global ``(epoch, index)``, so a sample and its
self-blended fake do not depend on which rank loads it.
"""

from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from deepfake_cli.detect import augment, synthetic
from deepfake_cli.detect.layouts import FAKE
from deepfake_cli.detect.preprocess import FrameStore
from deepfake_cli.detect.sequences import SequenceRef
from deepfake_cli.detect.tracks import FaceTrack


class FaceSamples(Dataset):
    """One sample per ref: ``T x C x H x W`` uint8 faces (``C x H x W`` for a frame model, whose
    refs hold one position) and the label as float32 (1 fake, 0 real, -1 unknown).

    An index is a ref's position, or ``(epoch, position)`` from ``EpochSampler``; a self-blend
    twin's faces are blended anew for each training epoch and identically in every evaluation.
    With ``augment``, samples indexed with an epoch (training) have their RGB channels degraded
    (``detect.augment``).
    """

    def __init__(self, store: FrameStore, tracks: list[FaceTrack], refs: list[SequenceRef], frame_level: bool,
                 seed: int = 0, augment: bool = False) -> None:
        self.store, self.tracks, self.refs, self.frame_level = store, tracks, refs, frame_level
        self.seed, self.augment = seed, augment

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = index if isinstance(index, tuple) else (None, index)
        ref = self.refs[index]
        track = self.tracks[ref.track]
        if track.synthetic:
            rng = (synthetic.evaluation_rng(track, ref.positions) if epoch is None
                   else synthetic.training_rng(self.seed, epoch, index))
            faces = synthetic.blended_faces(self.store, track, ref.positions, rng, self.frame_level)
        elif self.frame_level:
            faces = self.store.get(track.files[ref.positions[0]])
        else:
            faces = self.store.sequence([track.files[p] for p in ref.positions])
        if self.augment and epoch is not None:
            faces = augment.degrade_sample(faces, augment.sample_rng(self.seed, epoch, index))
        label = -1.0 if track.label is None else float(track.label == FAKE)
        return torch.from_numpy(faces), torch.tensor(label, dtype=torch.float32)


class EpochSampler(Sampler):
    """A sampler's indices tagged with the pass they belong to: ``(epoch, index)``, epochs counted
    from 1 at each new iteration. It runs in the main process, so DataLoader workers learn the
    epoch with every index."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.epoch += 1
        epoch = self.epoch
        for index in self.inner:
            yield epoch, index


class ShardSampler(Sampler):
    """Rank ``rank``'s share of each pass of ``inner``: the pass's indices padded (by repeating its
    first ones) to a multiple of ``ranks``, then every ``ranks``-th from position ``rank``. Every
    rank gets the same number of indices (the same number of steps); ``ranks`` 1 is ``inner``.

    ``inner`` must give every rank the same order (a sampler seeded alike on every rank): its
    generator advances with each pass, so each epoch is a new order, the same on every rank."""

    def __init__(self, inner: Sampler, rank: int = 0, ranks: int = 1) -> None:
        self.inner, self.rank, self.ranks = inner, rank, ranks

    def __len__(self) -> int:
        return -(-len(self.inner) // self.ranks)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        if self.ranks == 1:
            yield from self.inner
            return
        order = list(self.inner)
        if not order:
            return
        padded = order * -(-self.ranks * len(self) // len(order))
        yield from padded[:self.ranks * len(self)][self.rank::self.ranks]


def loader(samples: FaceSamples, batch_size: int, device: torch.device, workers: int = 0,
           shuffle: bool = False, seed: int = 0, rank: int = 0, ranks: int = 1) -> DataLoader:
    """Batches of ``samples`` (a seeded shuffle when ``shuffle``, each index tagged with its epoch
    by ``EpochSampler``: the order does not depend on ``workers``), pinned for a CUDA ``device``; a
    shuffled loader keeps its workers across epochs. With ``ranks > 1`` a shuffled loader gives
    rank ``rank`` its share of each epoch (``ShardSampler``). ``workers`` is capped at the CPUs
    this process may use."""
    workers = min(workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    order = torch.Generator().manual_seed(seed) if shuffle else None
    sampler = EpochSampler(ShardSampler(RandomSampler(samples, generator=order), rank, ranks)) if shuffle else None
    # The DataLoader draws its workers' base seed from its own generator once per iterator, and a
    # persistent-worker loader makes one iterator, a main-process loader one per epoch: sharing the
    # sampler's generator would make the order of every epoch after the first depend on ``workers``.
    seeds = torch.Generator().manual_seed(seed + 1)
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, generator=seeds,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0 and shuffle, prefetch_factor=4 if workers > 0 else None)


def to_device(batch: tuple[torch.Tensor, torch.Tensor],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device``, still uint8 (asynchronous from pinned memory on CUDA)."""
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def batches(samples: FaceSamples, batch_size: int, device: torch.device,
            workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every batch of ``samples`` in order, already on ``device``."""
    for batch in loader(samples, batch_size, device, workers):
        yield to_device(batch, device)
