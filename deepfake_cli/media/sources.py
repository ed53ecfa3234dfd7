"""Turning user inputs (files and folders) into a list of media sources and their frames."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from deepfake_cli.errors import InputError
from deepfake_cli.media.images import is_image, read_image
from deepfake_cli.media.video import VideoReader, is_video


def collect_sources(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into image and video files, in a stable order.

    A missing path is an error; a folder contributes every image and video below it.
    """
    if not inputs:
        raise InputError("no input given")
    sources: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError("input not found", str(path))
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and (is_image(p) or is_video(p)))
            if not found:
                raise InputError("folder holds no images or videos", str(path))
            sources.extend(found)
        elif is_image(path) or is_video(path):
            sources.append(path)
        else:
            raise InputError("not an image or video file (unknown suffix)", str(path))
    unique: dict[Path, None] = {}
    for source in sources:
        unique.setdefault(source, None)
    return list(unique)


def estimated_frames(source: Path, every_n: int = 1) -> int:
    """How many frames ``iter_frames`` will yield (from the container; 0 if unknown)."""
    if is_image(source):
        return 1
    try:
        count = VideoReader(source).info.frame_count
    except InputError:
        return 0
    return (count + every_n - 1) // every_n


def iter_frames(source: Path, every_n: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb)`` for an image (index 0) or every ``every_n``-th video frame."""
    if is_image(source):
        yield 0, read_image(source)
        return
    for index, frame in enumerate(VideoReader(source)):
        if index % every_n == 0:
            yield index, frame


def _extract_faces(folder: Path) -> list[Path]:
    """The face PNGs an extract folder's ``alignments.json`` lists and that are there (so faces
    ``dfk sort`` moved to ``rejected/``, and its contact sheets, are left out); [] for other paths."""
    from deepfake_cli.media.alignments import ALIGNMENTS_FILE, load_alignments, split_missing

    if not (folder.is_dir() and (folder / ALIGNMENTS_FILE).is_file()):
        return []
    return [folder / record.file for record in split_missing(load_alignments(folder), folder)[0]]


def media_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video, an image, or every image/video in a folder (sorted), in order; of an
    extract folder, its listed faces.

    With ``max_frames``, videos are subsampled evenly so at most about that many frames come out.
    """
    sources = _extract_faces(Path(path)) or collect_sources([path])
    total = sum(estimated_frames(s) for s in sources)
    every_n = max(1, -(-total // max_frames)) if max_frames and total else 1
    for source in sources:
        for _, frame in iter_frames(source, every_n if not is_image(source) else 1):
            yield frame
