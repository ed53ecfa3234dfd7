"""Frame preprocessing: resize, Canny edges with automatic thresholds, stacking into sequences.

Edges are found on the face crop at its stored resolution, then the edge map is shrunk to the
model's size with area averaging, so each input pixel holds the local edge density: fine texture
lost by a blurry or blended face still shows after resizing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from deepfake_cli.media.images import read_image


def auto_canny(gray: np.ndarray, sigma: float = 0.33) -> np.ndarray:
    """Canny edges with thresholds ``(1 -/+ sigma) * median`` of the image (no hand tuning)."""
    median = float(np.median(gray))
    lower = int(max(0.0, (1.0 - sigma) * median))
    upper = int(min(255.0, (1.0 + sigma) * median))
    return cv2.Canny(gray, lower, max(upper, lower + 1))


def prepare_frame(rgb: np.ndarray, size: int, mode: str, sigma: float = 0.33) -> np.ndarray:
    """One face crop as a ``C x size x size`` uint8 array: edges, RGB, or RGB then edges."""
    channels = []
    if mode in ("rgb", "rgb+canny"):
        channels.extend(np.moveaxis(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA), 2, 0))
    if mode in ("canny", "rgb+canny"):
        edges = auto_canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), sigma)
        channels.append(cv2.resize(edges, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(channels)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``... x C x H x W`` arrays to float32 in [-1, 1]."""
    return torch.from_numpy(batch).float().div_(127.5).sub_(1.0)


class FrameStore:
    """Preprocessed frames by file path: with ``cache`` (the default) kept in memory, so each face
    image is read once; without, read and preprocessed on every use (bounded memory)."""

    def __init__(self, size: int, mode: str, sigma: float, cache: bool = True) -> None:
        self.size, self.mode, self.sigma, self.cache = size, mode, sigma, cache
        self._frames: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        """The preprocessed ``C x H x W`` uint8 array of the face image at ``path``."""
        frame = self._frames.get(path)
        if frame is None:
            frame = prepare_frame(read_image(path), self.size, self.mode, self.sigma)
            if self.cache:
                self._frames[path] = frame
        return frame

    def clear(self) -> None:
        """Forget every cached frame."""
        self._frames.clear()

    def sequence(self, paths: list[Path]) -> np.ndarray:
        """``T x C x H x W`` uint8 array of the given face images, in order."""
        return np.stack([self.get(path) for path in paths])
