"""Training data of ``train-reenact``: face crops of talking-head videos and pairs of frames.

Each video (or image folder, read as a sequence) is read once: faces are found with the faces/
backend, and every frame is cut out with one *fixed* crop per segment of the video (the alignment
of the segment's first face), so the head's own motion stays visible in the crops, as it will be
between the driving frames at run time. A segment ends where no face is found or the face drifted
or scaled by more than ``data.drift`` of the crop from the segment's crop. Crops are cached in
``<cache>/<stem>-<key>.npz`` (the key covers the file and the data settings) and pairs are drawn
from the same segment.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.errors import InputError
from deepfake_cli.faces.align import alignment_matrix, transform_points, warp_face
from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.media.sources import media_frames
from deepfake_cli.reenact.schema import DataConfig

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FindFace = Callable[[np.ndarray], "DetectedFace | None"]


@dataclass
class Crops:
    """Face crops ``[N,S,S,3]`` uint8 and the segment of each (pairs come from one segment)."""

    images: np.ndarray
    segments: np.ndarray


def crop_sequence(frames: Iterable[np.ndarray], find: FindFace, size: int, data: DataConfig) -> Crops:
    """Cut fixed-per-segment crops of ``size`` px out of ``frames`` (see the module's docstring)."""
    images: list[np.ndarray] = []
    segments: list[int] = []
    segment, matrix = -1, None
    for index, frame in enumerate(frames):
        if index % data.every_n or (data.max_frames and len(images) >= data.max_frames):
            continue
        face = find(frame)
        if face is None:
            matrix = None
            continue
        own = alignment_matrix(face.landmarks, size, data.coverage)
        if matrix is None or _drifted(matrix, own, face.landmarks, size, data.drift):
            segment, matrix = segment + 1, own
        images.append(warp_face(frame, matrix, size))
        segments.append(segment)
    empty = np.zeros((0, size, size, 3), np.uint8)
    return Crops(np.stack(images) if images else empty, np.asarray(segments, dtype=np.int64))


def _drifted(fixed: np.ndarray, own: np.ndarray, landmarks: np.ndarray, size: int, drift: float) -> bool:
    """Whether the face, cut with ``fixed``, sits or scales more than ``drift`` of the crop away
    from where its own alignment ``own`` would put it."""
    centre = landmarks.mean(axis=0, keepdims=True)
    shift = np.linalg.norm(transform_points(centre, fixed) - transform_points(centre, own)) / size
    scale = np.sqrt(abs(np.linalg.det(fixed[:, :2])) / max(abs(np.linalg.det(own[:, :2])), 1e-12))
    return bool(shift > drift or abs(scale - 1) > drift)


def _cache_file(source: Path, cache: Path, size: int, data: DataConfig) -> Path:
    stat = source.stat()
    key = json.dumps([CACHE_VERSION, str(source.resolve()), stat.st_size, stat.st_mtime_ns, size,
                      data.coverage, data.every_n, data.max_frames, data.drift, data.detector_score])
    return cache / f"{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def source_crops(source: Path, cache: Path | None, find: FindFace, size: int, data: DataConfig) -> Crops:
    """The crops of one video or image folder, from ``cache`` when they were made before."""
    file = _cache_file(source, cache, size, data) if cache is not None else None
    if file is not None and file.is_file():
        with np.load(file, allow_pickle=False) as saved:
            return Crops(saved["images"], saved["segments"])
    crops = crop_sequence(media_frames(source), find, size, data)
    if file is not None:
        with atomic_path(file) as tmp, tmp.open("wb") as handle:
            np.savez(handle, images=crops.images, segments=crops.segments)
    return crops


def offline_finder(score: float) -> FindFace:
    """The largest face of a frame with 68 landmarks, or None: the offline backend (one thread),
    started at the first call (crops found in the cache need no backend)."""
    finder = None

    def find(frame: np.ndarray) -> DetectedFace | None:
        nonlocal finder
        if finder is None:
            from deepfake_cli.faces import create_backend
            from deepfake_cli.faces.finder import FaceFinder, FindOptions

            finder = FaceFinder(create_backend("offline", score_threshold=score, detector_threads=1),
                                FindOptions(min_score=score))
        faces = [face for face in finder.find(frame) if face.has_68]
        return faces[0] if faces else None

    return find


class PairSet:
    """Every crop of every source (uint8, host memory) and the frames each can be paired with."""

    def __init__(self, crops: Sequence[Crops], names: Sequence[str]) -> None:
        images, groups, offset, self.counts = [], [], 0, {}
        for crop, name in zip(crops, names, strict=True):
            for segment in np.unique(crop.segments):
                members = np.flatnonzero(crop.segments == segment)
                if len(members) >= 2:
                    groups.append(members + offset)
            images.append(crop.images)
            offset += len(crop.images)
            self.counts[name] = len(crop.images)
        if not groups:
            raise InputError("no two frames with a face in one shot of any video; train-reenact needs talking-head "
                             "videos with a face in most frames")
        self.images = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
        self.group_of = np.full(len(self.images), -1, dtype=np.int64)
        for number, members in enumerate(groups):
            self.group_of[members] = number
        self.groups = groups
        self.usable = np.flatnonzero(self.group_of >= 0)

    def sample(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` (source, driving) pairs of crops, each from one segment, uint8 ``[N,3,S,S]``."""
        sources = rng.choice(self.usable, size=count)
        drivings = np.array([rng.choice(self.groups[self.group_of[s]]) for s in sources])
        return self.images[torch.from_numpy(sources)], self.images[torch.from_numpy(drivings)]

    def spread(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` fixed pairs for previews: sources spread over the set, each with the farthest
        frame of its segment."""
        picks = self.usable[np.linspace(0, len(self.usable) - 1, min(count, len(self.usable))).round().astype(int)]
        partners = []
        for s in picks:
            members = self.groups[self.group_of[s]]
            partners.append(members[0] if s - members[0] > members[-1] - s else members[-1])
        return self.images[torch.from_numpy(picks)], self.images[torch.from_numpy(np.array(partners))]


def load_pairs(sources: Sequence[str | Path], cache: Path | None, size: int, data: DataConfig,
               progress: bool = False, find: FindFace | None = None) -> PairSet:
    """Crops of every source (cached), as a ``PairSet``. ``find`` defaults to the offline backend."""
    paths = [Path(s) for s in sources]
    missing = [p for p in paths if not p.exists()]
    if missing:  # before any face is searched for
        raise InputError("no such video or folder", str(missing[0]))
    find = find or offline_finder(data.detector_score)
    crops = []
    for path in tqdm(paths, desc="face crops", unit="video", disable=not progress):
        crops.append(source_crops(path, cache, find, size, data))
        log.info("%s: %d face crops in %d shots", path.name, len(crops[-1].images),
                 len(np.unique(crops[-1].segments)))
    return PairSet(crops, [str(p) for p in paths])
