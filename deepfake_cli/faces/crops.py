"""Aligned face crops written to a folder: the PNGs and records of extract's output format.

``crop_source`` finds, aligns and writes the faces of one video or image (de-duplicated by the
PNG's SHA-1 on a writer thread); ``crop_into`` does it for one source into a folder of its own,
with its ``alignments.json``. The extract stage builds its resumable, many-source run on
``crop_source``; detect caches a video's faces with ``crop_into`` (no stage imports another).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.errors import InputError
from deepfake_cli.faces.align import alignment_matrix, warp_face
from deepfake_cli.faces.finder import FaceFinder
from deepfake_cli.media.alignments import ALIGNMENTS_FILE, Alignments, FaceRecord, save_alignments
from deepfake_cli.media.images import encode_png
from deepfake_cli.media.pipeline import run_pipeline
from deepfake_cli.media.sources import iter_frames


class FaceWriter:
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


@dataclass
class SourceFaces:
    """The faces written for one source."""

    records: list[FaceRecord] = field(default_factory=list)
    frames: int = 0
    duplicates: int = 0


def crop_source(source: Path, finder: FaceFinder, writer: FaceWriter, stem: str, size: int, coverage: float,
                every_n: int = 1, on_frame: Callable[[], None] | None = None) -> SourceFaces:
    """Find, align and write the faces of ``source`` (every ``every_n``-th frame) as
    ``<stem>_<frame>_<face>.png`` in ``writer.outdir``; duplicates of faces already written are dropped.

    Raises ``InputError`` if ``source`` cannot be read, after removing what it wrote of it.
    """
    pending: list[tuple[Future, FaceRecord]] = []
    frames = 0
    try:
        # decoding runs in a feeder thread, a few frames ahead (bounded memory)
        for frame_index, image in run_pipeline(iter_frames(source, every_n), []):
            frames += 1
            if on_frame is not None:
                on_frame()
            for face_index, face in enumerate(finder.find(image)):
                matrix = alignment_matrix(face.landmarks, size, coverage)
                name = f"{stem}_{frame_index:06d}_{face_index}.png"
                record = FaceRecord(
                    source=str(source), frame=frame_index, face=face_index, bbox=face.bbox.tolist(),
                    score=face.score, landmarks=face.landmarks, matrix=matrix, size=size,
                    file=name, sha1="")
                pending.append((writer.submit(warp_face(image, matrix, size), name), record))
    except InputError:
        for future, record in pending:
            digest = future.result()
            if digest:
                writer.seen.discard(digest)
                (writer.outdir / record.file).unlink(missing_ok=True)
        raise
    result = SourceFaces(frames=frames)
    for future, record in pending:
        digest = future.result()
        if digest is None:
            result.duplicates += 1
            continue
        record.sha1 = digest
        result.records.append(record)
    return result


def crop_into(source: Path, outdir: Path, finder: FaceFinder, detector: str, size: int, coverage: float,
              every_n: int = 1) -> Alignments:
    """The faces of one video or image written into the (new or empty) folder ``outdir`` with its
    ``alignments.json``, as ``dfk extract`` would write them; the file is written even without a face.

    Raises ``InputError`` if ``source`` cannot be read (nothing of it is left in ``outdir``).
    """
    source = source.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    writer = FaceWriter(outdir, set())
    try:
        found = crop_source(source, finder, writer, source.stem, size, coverage, every_n)
    finally:
        writer.close()
    alignments = Alignments(detector=detector, size=size, coverage=coverage, faces=found.records,
                            sources={str(source): {"frames": found.frames, "faces": len(found.records)}})
    save_alignments(outdir / ALIGNMENTS_FILE, alignments)
    return alignments
