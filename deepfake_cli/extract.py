"""The extract stage: find faces, landmark and align them, write PNGs and ``alignments.json``.

Faces are found by ``faces.finder.FaceFinder`` and written by ``faces.crops`` (the output format
detect's face cache shares). With a reference (``ExtractOptions.reference``) only that person's
faces are kept: each face found is compared with the reference's identity descriptor
(``faces.identity.IdentityMatcher``).

Resumable: sources already listed in the output's alignments file are skipped, and the file is
rewritten (atomically) after each source, so an interrupted run loses at most one source's work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from deepfake_cli.errors import InputError, NoFaceError
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.faces.crops import FaceWriter, crop_source
from deepfake_cli.faces.finder import FaceFinder, FindOptions
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, IdentityMatcher
from deepfake_cli.media.alignments import ALIGNMENTS_FILE, Alignments, FaceRecord, load_alignments, save_alignments
from deepfake_cli.media.sources import collect_sources, estimated_frames

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions(FindOptions):
    """What to extract and how: which faces to keep (``FindOptions``: all_faces, min_size,
    min_score) and the extract-only options below."""

    detector: str = "offline"
    size: int = 256
    coverage: float = 0.625
    every_n: int = 1
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
        super().check()
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


def _unique_stem(source: Path, taken: dict[str, str]) -> str:
    """A file-name stem for ``source`` not yet used by another source in this output folder."""
    stem, n = source.stem, 1
    while taken.get(stem, str(source)) != str(source):
        n += 1
        stem = f"{source.stem}-{n}"
    taken[stem] = str(source)
    return stem


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
) -> ExtractSummary:
    """Extract aligned faces from videos, images and folders into ``outdir``.

    Raises ``NoFaceError`` if, after this run, the output holds no face at all.
    """
    options = options or ExtractOptions()
    options.check()
    target = Path(outdir)
    sources = [s.resolve() for s in collect_sources(list(inputs))]
    backend = backend or create_backend(
        options.detector, device=options.device, fan_weights=options.fan_weights,
        flip_input=options.flip_input, score_threshold=min(options.min_score, 0.8))
    matcher = (IdentityMatcher.from_reference(options.reference, backend, options.reference_distance)
               if options.reference else None)
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
    writer = FaceWriter(target, {r.sha1 for r in alignments.faces})
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
    writer: FaceWriter,
    stem: str,
    options: ExtractOptions,
    summary: ExtractSummary,
    bar: tqdm,
) -> tuple[list[FaceRecord], int] | None:
    """Extract one source: its records and frame count; None (after a warning) if unreadable."""
    try:
        found = crop_source(source, finder, writer, stem, options.size, options.coverage, options.every_n,
                            on_frame=lambda: bar.update(1))
    except InputError as exc:
        log.warning("skipping unreadable input: %s", exc)
        summary.failed.append((str(source), exc.message))
        return None
    summary.duplicates += found.duplicates
    summary.frames += found.frames
    summary.faces += len(found.records)
    if not found.records:
        log.warning("no face found in %s", source)
        summary.without_faces.append(str(source))
    return found.records, found.frames
