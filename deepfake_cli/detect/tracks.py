"""Face tracks: the aligned faces of one video (or image) in frame order, ready to be sequenced.

Faces are found (``faces.finder``) and written in the extract stage's output format
(``faces.crops``) once per video or image, into a cache folder keyed by its path, size,
modification time and the face options, so later runs (a second training, another fold,
detection) reuse the faces. An extract output folder is read directly through its
``alignments.json``: each source in it is one track.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepfake_cli.detect.config import FacesConfig
from deepfake_cli.detect.layouts import LabelledInput
from deepfake_cli.errors import InputError
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.faces.crops import crop_into
from deepfake_cli.faces.finder import FaceFinder
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, IdentityMatcher
from deepfake_cli.media.alignments import ALIGNMENTS_FILE, Alignments, FaceRecord, load_alignments, save_alignments
from deepfake_cli.media.images import is_image, read_image
from deepfake_cli.media.video import VideoReader, is_video

log = logging.getLogger(__name__)

CACHE_DIR = "faces"  # the face cache inside a detector directory


@dataclass
class FaceTrack:
    """One face per frame of one source, in frame order (the largest face when there are several)."""

    key: str
    source: str
    frames: list[int]
    files: list[Path]
    boxes: list[list[float]]
    label: int | None = None
    group: str = ""
    split: str | None = None
    method: str | None = None  # the generator of a fake, when the dataset names it
    family: str | None = None  # the fake's family (swap, reenact, synth), when the dataset names it
    still: bool = False  # a single image: scored as a frame, not a sequence
    # the 68 iBUG landmarks of each face in its crop's pixels (None where the extract stage kept
    # only 5 points); what self-blended fakes are made from (``detect.synthetic``)
    landmarks: list[np.ndarray | None] = field(default_factory=list, compare=False, repr=False)
    synthetic: str | None = None  # "sbi": fakes made on the fly from this (real) track's faces

    def __len__(self) -> int:
        return len(self.frames)


def tracks_from_alignments(folder: Path, alignments: Alignments, key: str | None = None) -> list[FaceTrack]:
    """One track per source of an extract folder, keeping the lowest face index of each frame.

    ``key`` names the track when the folder holds a single source (a cached video or image);
    otherwise each track is named ``<folder>::<source>``.
    """
    by_source = alignments.by_source()
    tracks = []
    for source, records in by_source.items():
        first: dict[int, FaceRecord] = {}
        for record in records:
            first.setdefault(record.frame, record)
        chosen = [first[frame] for frame in sorted(first)]
        tracks.append(FaceTrack(
            key=key if key is not None and len(by_source) == 1 else f"{folder}::{source}",
            source=source,
            frames=[r.frame for r in chosen],
            files=[folder / r.file for r in chosen],
            boxes=[list(r.bbox) for r in chosen],
            still=is_image(Path(source)),
            landmarks=[r.aligned_landmarks() if r.has_68 else None for r in chosen],
        ))
    return tracks


class FaceSource:
    """Face tracks of videos, images and extract folders; videos and images are extracted once
    into ``cache_dir`` and reused afterwards.

    With a ``reference`` (an image or folder of one person, as ``dfk extract --reference``) the
    faces of videos and images are only that person's; they are cached apart from the others (the
    cache key holds the reference's descriptor and the distance). Extract folders are read as they are.
    """

    def __init__(self, cache_dir: Path, options: FacesConfig, device: str = "cpu", reference: str | None = None,
                 reference_distance: float = SAME_PERSON_DISTANCE) -> None:
        self.cache_dir = cache_dir
        self.config = options
        self.device = device
        self.reference = reference
        self.reference_distance = reference_distance
        self._backend: FaceBackend | None = None
        self._matcher: IdentityMatcher | None = None
        self.reused = 0
        self.extracted = 0

    def backend(self) -> FaceBackend:
        """The face backend (built once)."""
        if self._backend is None:
            self._backend = create_backend(self.config.detector, device=self.device)
        return self._backend

    def matcher(self) -> IdentityMatcher | None:
        """The reference person's matcher (read once), or None without a reference."""
        if self.reference and self._matcher is None:
            self._matcher = IdentityMatcher.from_reference(self.reference, self.backend(), self.reference_distance)
        return self._matcher

    def tracks(self, path: Path) -> list[FaceTrack]:
        """The tracks of ``path``; an empty list when no face was found.

        Raises ``InputError`` when a video or image cannot be read at all.
        """
        if path.is_dir():
            return tracks_from_alignments(path, load_alignments(path))
        folder = self._extracted(path)
        return tracks_from_alignments(folder, load_alignments(folder), key=str(path))

    def labelled(self, items: list[LabelledInput],
                 progress: bool = False) -> tuple[list[FaceTrack], list[dict[str, str]]]:
        """Tracks of labelled inputs, carrying label, group (default: the track itself), split, method
        and family.

        Inputs that cannot be read or show no face are skipped and listed as ``{input, reason}``.
        """
        tracks: list[FaceTrack] = []
        skipped: list[dict[str, str]] = []
        for item in tqdm(items, desc="faces", unit="input", disable=not progress, dynamic_ncols=True):
            try:
                found = self.tracks(item.path)
            except InputError as exc:
                log.warning("skipping %s: %s", item.path, exc.message)
                skipped.append({"input": str(item.path), "reason": exc.message})
                continue
            if not found:
                skipped.append({"input": str(item.path), "reason": "no face found"})
            tracks.extend(replace(t, label=item.label, group=item.group or t.key, split=item.split,
                                  method=item.method, family=item.family) for t in found)
        return tracks, skipped

    def cache_folder(self, path: Path) -> Path:
        """Where the faces of the video or image ``path`` are (or will be) cached."""
        stat = path.stat()
        key = {"path": str(path.resolve()), "bytes": stat.st_size, "mtime": stat.st_mtime_ns,
               "faces": asdict(self.config)}
        matcher = self.matcher()
        if matcher is not None:  # another person's faces: another folder (no key changes without one)
            key["reference"] = [round(float(v), 3) for v in matcher.reference] + [matcher.threshold]
            key["reference_match"] = f"median of {len(matcher.descriptors)} pairwise distances"
        identity = json.dumps(key, sort_keys=True)
        return self.cache_dir / f"{path.stem}-{hashlib.sha1(identity.encode()).hexdigest()[:12]}"

    def _extracted(self, path: Path) -> Path:
        folder = self.cache_folder(path)
        if (folder / ALIGNMENTS_FILE).is_file():
            self.reused += 1
            return folder
        _check_readable(path)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=self.cache_dir))
        try:
            finder = FaceFinder(self.backend(), matcher=self.matcher())
            config = self.config
            try:  # no face: an alignments file without faces is remembered, so it is not retried
                crop_into(path, staging, finder, config.detector, config.size, config.coverage, config.every_n)
            except InputError as exc:  # unreadable part way: remembered as faceless too
                log.warning("skipping unreadable input: %s", exc)
                save_alignments(staging / ALIGNMENTS_FILE, Alignments(
                    detector=config.detector, size=config.size, coverage=config.coverage,
                    sources={str(path.resolve()): {"frames": 0, "faces": 0}}))
            if not folder.exists():
                os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.extracted += 1
        return folder


def _check_readable(path: Path) -> None:
    """Raise ``InputError`` unless ``path`` is an image that decodes or a video that opens."""
    if is_image(path):
        read_image(path)
    elif is_video(path):
        VideoReader(path)
    else:
        raise InputError("not a video, image or extract output folder", str(path))
