"""The extract stage: find faces, landmark and align them, write PNGs and ``alignments.json``.

With a reference (``ExtractOptions.reference``) only that person's faces are kept: each face found
is compared with the reference's identity descriptor (``faces.identity.IdentityMatcher``).

Resumable: sources already listed in the output's alignments file are skipped, and the file is
rewritten (atomically) after each source, so an interrupted run loses at most one source's work.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.errors import InputError, NoFaceError
from deepfake_cli.faces import DetectedFace, FaceBackend, create_backend
from deepfake_cli.faces.align import alignment_matrix, warp_face
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, IdentityMatcher
from deepfake_cli.media.alignments import ALIGNMENTS_FILE, Alignments, FaceRecord, load_alignments, save_alignments
from deepfake_cli.media.images import encode_png
from deepfake_cli.media.pipeline import run_pipeline
from deepfake_cli.media.sources import collect_sources, estimated_frames, iter_frames

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    """What to extract and how."""

    detector: str = "offline"
    size: int = 256
    coverage: float = 0.625
    every_n: int = 1
    all_faces: bool = False
    min_size: float = 20.0
    min_score: float = 0.8
    fan_weights: str | None = None
    flip_input: bool = False
    device: str = "cpu"
    reference: str | None = None
    reference_distance: float = SAME_PERSON_DISTANCE

    def check(self) -> None:
        """Reject out-of-range values with a clear message."""
        if self.size < 16:
            raise InputError(f"--size must be at least 16, got {self.size}")
        if not 0.1 <= self.coverage <= 1.0:
            raise InputError(f"coverage must be within 0.1..1.0, got {self.coverage}")
        if self.every_n < 1:
            raise InputError(f"--every-n must be at least 1, got {self.every_n}")
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"--min-score must be within 0..1, got {self.min_score}")
        if not 0.0 < self.reference_distance <= 2.0:
            raise InputError(f"--reference-distance must be within 0..2, got {self.reference_distance}")


@dataclass
class ExtractSummary:
    """What one extract run did."""

    outdir: Path
    sources: int = 0
    resumed: int = 0
    frames: int = 0
    faces: int = 0
    duplicates: int = 0
    others: int = 0
    without_faces: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    detect_seconds: float = 0.0
    landmark_seconds: float = 0.0
    identity_seconds: float = 0.0

    def line(self) -> str:
        """A one-line summary for the terminal."""
        parts = [f"{self.faces} faces from {self.frames} frames of {self.sources} sources"]
        if self.resumed:
            parts.append(f"{self.resumed} already done")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates dropped")
        if self.others:
            parts.append(f"{self.others} faces of other people left out")
        if self.without_faces:
            parts.append(f"{len(self.without_faces)} without faces")
        if self.failed:
            parts.append(f"{len(self.failed)} unreadable skipped")
        return f"extract: {', '.join(parts)} in {self.seconds:.1f}s -> {self.outdir / ALIGNMENTS_FILE}"


@dataclass
class FinderTimes:
    """Seconds spent in the detector and the landmarker (and, with a reference, computing identity
    descriptors), for benchmarks."""

    detect: float = 0.0
    landmarks: float = 0.0
    identity: float = 0.0
    descriptors: int = 0


class FaceFinder:
    """Detect, filter and landmark faces in frames with one backend; with a ``matcher``, only the
    reference person's faces are kept."""

    def __init__(self, backend: FaceBackend, options: ExtractOptions, matcher: IdentityMatcher | None = None) -> None:
        self.backend = backend
        self.options = options
        self.matcher = matcher
        self.others = 0
        self.times = FinderTimes()

    def keeps(self, face: DetectedFace) -> bool:
        """Whether a detected face passes the score and size filters."""
        return face.score >= self.options.min_score and face.min_side >= self.options.min_size

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """The detector's boxes in ``image`` (timed, unfiltered)."""
        start = time.perf_counter()
        boxes = self.backend.detect_boxes(image)
        self.times.detect += time.perf_counter() - start
        return boxes

    def landmark(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        """``faces`` with their 68 landmarks (timed)."""
        start = time.perf_counter()
        faces = self.backend.landmarks(image, faces)
        self.times.landmarks += time.perf_counter() - start
        return faces

    def identify(self, image: np.ndarray, faces: list[DetectedFace]) -> list[float]:
        """Distance of each of ``faces`` (landmarked) to the reference (timed; needs a matcher)."""
        assert self.matcher is not None
        start, computed = self.matcher.seconds, self.matcher.computed
        distances = self.matcher.distances(image, faces)
        self.times.identity += self.matcher.seconds - start
        self.times.descriptors += self.matcher.computed - computed
        return distances

    def find(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces passing the size/score filters, largest first (only the largest unless all_faces).

        With a matcher: only the faces of the reference person, largest first (only the nearest to
        the reference unless all_faces)."""
        kept = sorted(filter(self.keeps, self.detect(image)), key=lambda f: f.area, reverse=True)
        if self.matcher is not None:
            return self._find_reference(image, kept)
        if not self.options.all_faces:
            kept = kept[:1]
        return self.landmark(image, kept) if kept else []

    def _find_reference(self, image: np.ndarray, kept: list[DetectedFace]) -> list[DetectedFace]:
        assert self.matcher is not None
        faces = self.landmark(image, kept) if kept else []
        distances = self.identify(image, faces)
        matching = [(d, i) for i, d in enumerate(distances) if d < self.matcher.threshold]
        self.others += len(faces) - len(matching)
        if not self.options.all_faces:
            self.others += len(matching[1:])
            matching = sorted(matching)[:1]
        return [faces[i] for _, i in sorted(matching, key=lambda m: m[1])]


def _unique_stem(source: Path, taken: dict[str, str]) -> str:
    """A file-name stem for ``source`` not yet used by another source in this output folder."""
    stem, n = source.stem, 1
    while taken.get(stem, str(source)) != str(source):
        n += 1
        stem = f"{source.stem}-{n}"
    taken[stem] = str(source)
    return stem


class _FaceWriter:
    """Encodes, de-duplicates and writes aligned faces on a worker thread."""

    def __init__(self, outdir: Path, seen: set[str]) -> None:
        self.outdir = outdir
        self.seen = seen
        self.pool = ThreadPoolExecutor(max_workers=1)

    def submit(self, aligned: np.ndarray, name: str) -> Future:
        return self.pool.submit(self._write, aligned, name)

    def _write(self, aligned: np.ndarray, name: str) -> str | None:
        png = encode_png(aligned)
        digest = hashlib.sha1(png).hexdigest()
        if digest in self.seen:
            return None
        self.seen.add(digest)
        with atomic_path(self.outdir / name) as tmp:
            tmp.write_bytes(png)
        return digest

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _open_alignments(outdir: Path, options: ExtractOptions) -> Alignments:
    file = outdir / ALIGNMENTS_FILE
    if not file.exists():
        return Alignments(detector=options.detector, size=options.size, coverage=options.coverage)
    existing = load_alignments(file)
    if existing.size != options.size or abs(existing.coverage - options.coverage) > 1e-9:
        raise InputError(
            f"output folder holds faces of size {existing.size} and coverage {existing.coverage}; "
            f"use the same --size/coverage to resume, or another folder", str(outdir))
    if existing.detector != options.detector:
        raise InputError(f"output folder holds faces found by the {existing.detector} detector; use "
                         f"--detector {existing.detector} to resume, or another folder", str(outdir))
    return existing


def extract(
    inputs: list[str | Path],
    outdir: str | Path,
    options: ExtractOptions | None = None,
    progress: bool = True,
    backend: FaceBackend | None = None,
    matcher: IdentityMatcher | None = None,
) -> ExtractSummary:
    """Extract aligned faces from videos, images and folders into ``outdir``.

    ``matcher`` replaces the one ``options.reference`` would be read into (a caller extracting
    many inputs reads the reference once). Raises ``NoFaceError`` if, after this run, the output holds no face at all.
    """
    options = options or ExtractOptions()
    options.check()
    target = Path(outdir)
    sources = [s.resolve() for s in collect_sources(list(inputs))]
    backend = backend or create_backend(
        options.detector, device=options.device, fan_weights=options.fan_weights,
        flip_input=options.flip_input, score_threshold=min(options.min_score, 0.8))
    if matcher is None and options.reference:
        matcher = IdentityMatcher.from_reference(options.reference, backend, options.reference_distance)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    alignments = _open_alignments(target, options)
    fresh = not alignments.sources
    finder = FaceFinder(backend, options, matcher)
    summary = ExtractSummary(outdir=target, sources=len(sources))
    started = time.perf_counter()
    todo = [s for s in sources if str(s) not in alignments.sources]
    summary.resumed = len(sources) - len(todo)
    taken = {Path(r.file).stem.rsplit("_", 2)[0]: r.source for r in alignments.faces}
    writer = _FaceWriter(target, {r.sha1 for r in alignments.faces})
    total = sum(estimated_frames(s, options.every_n) for s in todo)
    try:
        with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            for source in todo:
                bar.set_description(source.name[:24])
                result = _extract_source(source, finder, writer, _unique_stem(source, taken), options, summary, bar)
                if result is None:
                    continue
                records, frames = result
                alignments.faces.extend(records)
                alignments.sources[str(source)] = {"frames": frames, "faces": len(records)}
                save_alignments(target / ALIGNMENTS_FILE, alignments)
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - started
    summary.detect_seconds, summary.landmark_seconds = finder.times.detect, finder.times.landmarks
    summary.identity_seconds, summary.others = finder.times.identity, finder.others
    if not alignments.faces:
        if fresh:
            (target / ALIGNMENTS_FILE).unlink(missing_ok=True)
        if created and not any(target.iterdir()):
            target.rmdir()
        raise NoFaceError(f"no face found in any of the {len(sources)} inputs", str(target))
    return summary


def _extract_source(
    source: Path,
    finder: FaceFinder,
    writer: _FaceWriter,
    stem: str,
    options: ExtractOptions,
    summary: ExtractSummary,
    bar: tqdm,
) -> tuple[list[FaceRecord], int] | None:
    """Extract one source: its records and frame count; None (after a warning) if unreadable."""
    pending: list[tuple[Future, FaceRecord]] = []
    frames = 0
    try:
        # decoding runs in a feeder thread, a few frames ahead (bounded memory)
        for frame_index, image in run_pipeline(iter_frames(source, options.every_n), []):
            frames += 1
            bar.update(1)
            for face_index, face in enumerate(finder.find(image)):
                matrix = alignment_matrix(face.landmarks, options.size, options.coverage)
                name = f"{stem}_{frame_index:06d}_{face_index}.png"
                record = FaceRecord(
                    source=str(source), frame=frame_index, face=face_index, bbox=face.bbox.tolist(),
                    score=face.score, landmarks=face.landmarks, matrix=matrix, size=options.size,
                    file=name, sha1="")
                pending.append((writer.submit(warp_face(image, matrix, options.size), name), record))
    except InputError as exc:
        log.warning("skipping unreadable input: %s", exc)
        summary.failed.append((str(source), exc.message))
        for future, record in pending:
            digest = future.result()
            if digest:
                writer.seen.discard(digest)
                (summary.outdir / record.file).unlink(missing_ok=True)
        return None
    records = []
    for future, record in pending:
        digest = future.result()
        if digest is None:
            summary.duplicates += 1
            continue
        record.sha1 = digest
        records.append(record)
    summary.frames += frames
    summary.faces += len(records)
    if not records:
        log.warning("no face found in %s", source)
        summary.without_faces.append(str(source))
    return records, frames
