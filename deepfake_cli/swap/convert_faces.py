"""Where the faces are, for convert: detected per frame, or read from an extract alignments file.

A ``FaceLocator`` maps ``(source, frame index, frame)`` to the landmarks of the faces to swap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from deepfake_cli.extract import ExtractOptions, FaceFinder
from deepfake_cli.faces import DetectedFace, FaceBackend
from deepfake_cli.media.alignments import Alignments

DETECT_MAX_SIDE = 640


class ScaledBackend(FaceBackend):
    """Runs another backend's detector on a copy shrunk to ``max_side`` px; landmarks at full size.

    Faces in video frames are large, so detecting at 640 px finds the same faces several times
    faster on HD input; the landmarker still sees every pixel.
    """

    def __init__(self, backend: FaceBackend, max_side: int = DETECT_MAX_SIDE) -> None:
        self.backend, self.max_side = backend, max_side
        self.name = backend.name

    def detect_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        scale = self.max_side / max(image.shape[:2])
        if scale >= 1.0:
            return self.backend.detect_boxes(image)
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [DetectedFace(bbox=face.bbox / scale, score=face.score, landmarks=face.landmarks / scale)
                for face in self.backend.detect_boxes(small)]

    def landmarks(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        return self.backend.landmarks(image, faces)


class FaceLocator(Protocol):
    """Where the faces of frame ``index`` of ``source`` are: a list of landmark arrays in frame pixels."""

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]: ...


class DetectingLocator:
    """Detects and landmarks the largest face of every frame (``finder.times`` has the seconds spent)."""

    def __init__(self, backend: FaceBackend) -> None:
        self.finder = FaceFinder(ScaledBackend(backend), ExtractOptions())

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        return [face.landmarks for face in self.finder.find(frame)]


class StoredLocator:
    """Looks the landmarks up in an extract alignments file (by source path, else file name)."""

    def __init__(self, alignments: Alignments) -> None:
        self.groups = alignments.by_source()
        self._names = {Path(key).name: key for key in self.groups}
        self._source: Path | None = None
        self._by_frame: dict[int, list[np.ndarray]] = {}

    def has(self, source: Path) -> bool:
        """Whether the file lists any face of ``source``."""
        return self._key(source) is not None

    def _key(self, source: Path) -> str | None:
        key = str(source.resolve())
        return key if key in self.groups else self._names.get(source.name)

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        if source != self._source:
            key = self._key(source)
            self._source, self._by_frame = source, {}
            for record in self.groups.get(key, []) if key else []:
                self._by_frame.setdefault(record.frame, []).append(record.landmarks)
        return self._by_frame.get(index, [])
