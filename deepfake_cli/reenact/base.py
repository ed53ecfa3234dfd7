"""The animator interface every reenactment method implements (the warp baseline, learned models)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from deepfake_cli.faces.base import DetectedFace


class Animator(Protocol):
    """Animates one photo with the motion of a driving video, relative to the video's first frame.

    ``start`` is called once per output with the photo, its face, and the driving video's first
    frame and face; ``frame`` then turns each driving frame into one output frame of the photo's
    size (RGB uint8). A driving frame equal to the first frame gives the photo back.
    """

    def start(self, photo: np.ndarray, photo_face: DetectedFace, first: np.ndarray,
              first_face: DetectedFace) -> None:
        """Remember the photo and the driving video's reference pose."""

    def frame(self, driving: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The photo animated with ``face``'s motion relative to the first driving face."""
