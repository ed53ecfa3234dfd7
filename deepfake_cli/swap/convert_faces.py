"""Where the faces are, for convert: detected (and followed from frame to frame), or read from an
extract alignments file.

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
REDETECT_EVERY = 10
WINDOW_PX = 224
WINDOW_CONTEXT = 2.0
MIN_OVERLAP = 0.3


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


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


class DetectingLocator:
    """Detects and landmarks the largest face of each frame, following it between full searches.

    The whole frame is searched (shrunk to 640 px) on a source's first frame, every ``redetect``
    frames and whenever the face is lost. In between, the detector searches only a window
    ``WINDOW_CONTEXT`` times the last face's size around it, shrunk to ``WINDOW_PX`` px: a fraction
    of the cost, with the same landmark accuracy. The detector still confirms the face on every
    frame, so a face that leaves the picture (or a cut) is not followed. ``redetect=1`` searches
    every whole frame. ``finder.times`` has the seconds spent.
    """

    def __init__(self, backend: FaceBackend, redetect: int = REDETECT_EVERY) -> None:
        self.finder = FaceFinder(ScaledBackend(backend), ExtractOptions())
        self.redetect = redetect
        self.full_searches = 0
        self._previous: tuple[Path, int] | None = None
        self._box: np.ndarray | None = None
        self._since_search = 0

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        follows = self._previous == (source, index - 1) and self._since_search < self.redetect
        box = self._box if follows else None
        self._previous = (source, index)
        faces = self._near(frame, box) if box is not None else []
        if faces:
            self._since_search += 1
        else:
            faces = self.finder.find(frame)
            self.full_searches += 1
            self._since_search = 1
        self._box = faces[0].bbox if faces else None
        return [face.landmarks for face in faces]

    def _near(self, frame: np.ndarray, box: np.ndarray) -> list[DetectedFace]:
        """The face in a window around ``box`` that overlaps it most, landmarked; [] if none."""
        half = WINDOW_CONTEXT * max(box[2] - box[0], box[3] - box[1]) / 2
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        height, width = frame.shape[:2]
        x0, y0 = max(int(centre_x - half), 0), max(int(centre_y - half), 0)
        x1, y1 = min(int(centre_x + half) + 1, width), min(int(centre_y + half) + 1, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        window = frame[y0:y1, x0:x1]
        scale = min(1.0, WINDOW_PX / max(window.shape[:2]))
        if scale < 1.0:
            window = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        corner = np.array([x0, y0], dtype=np.float64)
        found = [DetectedFace(bbox=face.bbox / scale + np.tile(corner, 2), score=face.score,
                              landmarks=face.landmarks / scale + corner)
                 for face in self.finder.detect(np.ascontiguousarray(window))]
        found = [face for face in found if self.finder.keeps(face)]
        best = max(found, key=lambda face: box_overlap(face.bbox, box), default=None)
        if best is None or box_overlap(best.bbox, box) < MIN_OVERLAP:
            return []
        return self.finder.landmark(frame, [best])


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
