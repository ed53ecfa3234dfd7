"""The face-backend interface: every backend returns boxes, scores and iBUG-68 landmarks."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass
class DetectedFace:
    """One face in one image: box ``[x1, y1, x2, y2]``, score and landmarks (68x2 or 5x2)."""

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def has_68(self) -> bool:
        """Whether the landmarks are the full iBUG 68 points (else the 5-point fallback)."""
        return len(self.landmarks) == 68

    @property
    def min_side(self) -> float:
        """The shorter side of the box in pixels."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(self.bbox[2] - self.bbox[0], 0) * max(self.bbox[3] - self.bbox[1], 0))


class FaceBackend(abc.ABC):
    """Find faces and their landmarks in RGB uint8 images."""

    name: str = "base"

    @abc.abstractmethod
    def detect_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        """Boxes, scores and the detector's own (5-point) landmarks."""

    @abc.abstractmethod
    def landmarks(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        """The same faces with 68-point landmarks where the landmarker succeeded."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Detect and landmark every face in ``image``, largest first."""
        faces = sorted(self.detect_boxes(image), key=lambda f: f.area, reverse=True)
        return self.landmarks(image, faces) if faces else []
