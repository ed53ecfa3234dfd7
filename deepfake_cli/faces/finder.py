"""Face finding: detect, filter and landmark the faces of a frame with one backend.

``FaceFinder`` is shared by the stages that look for faces: extract (every face it writes), detect
(through ``faces.crops`` when it caches a video's faces) and convert (``faces.follow``). With an
``IdentityMatcher`` (``faces.identity``) only the reference person's faces are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from deepfake_cli.errors import InputError
from deepfake_cli.faces.base import DetectedFace, FaceBackend
from deepfake_cli.faces.identity import IdentityMatcher


@dataclass
class FindOptions:
    """Which of the detector's faces are kept."""

    all_faces: bool = False
    min_size: float = 20.0
    min_score: float = 0.8

    def check(self) -> None:
        """Reject out-of-range values with a clear message."""
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"--min-score must be within 0..1, got {self.min_score}")


@dataclass
class FinderTimes:
    """Seconds spent in the detector and the landmarker (and, with a reference, computing identity
    descriptors), for benchmarks."""

    detect: float = 0.0
    landmarks: float = 0.0
    identity: float = 0.0


class FaceFinder:
    """Detect, filter and landmark faces in frames with one backend; with a ``matcher``, only the
    reference person's faces are kept."""

    def __init__(self, backend: FaceBackend, options: FindOptions | None = None,
                 matcher: IdentityMatcher | None = None) -> None:
        self.backend = backend
        self.options = options or FindOptions()
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
        start = self.matcher.seconds
        distances = self.matcher.distances(image, faces)
        self.times.identity += self.matcher.seconds - start
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
