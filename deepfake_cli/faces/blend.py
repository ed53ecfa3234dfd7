"""Blending a face into a frame: feathered alpha blending or Poisson (OpenCV seamless clone).

All functions take RGB uint8 images of one size and a float alpha mask in [0, 1] of that size,
and return a new uint8 image. Pixels where alpha is 0 are returned unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

BLEND_METHODS = ("feather", "poisson")


def feather_blend(background: np.ndarray, foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``background * (1 - alpha) + foreground * alpha``, rounded back to uint8."""
    weight = np.ascontiguousarray(alpha, dtype=np.float32)
    return cv2.blendLinear(np.ascontiguousarray(foreground), np.ascontiguousarray(background), weight, 1.0 - weight)


def poisson_blend(background: np.ndarray, foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Seamless-clone the foreground where alpha > 0.5, then feather with alpha.

    The Poisson solve makes the face's gradients meet the frame's colours at the mask edge; the
    final feather keeps the soft edge of the mask. Falls back to feathering when the hard region
    is empty.
    """
    hard = (alpha > 0.5).astype(np.uint8) * 255
    hard[0, :] = hard[-1, :] = 0
    hard[:, 0] = hard[:, -1] = 0
    if not hard.any():
        return feather_blend(background, foreground, alpha)
    x, y, w, h = cv2.boundingRect(hard)
    # seamlessClone puts the mask's bounding box at ``center - size // 2``: this keeps it in place.
    center = (x + w // 2, y + h // 2)
    src = cv2.cvtColor(foreground, cv2.COLOR_RGB2BGR)
    dst = cv2.cvtColor(background, cv2.COLOR_RGB2BGR)
    cloned = cv2.cvtColor(cv2.seamlessClone(src, dst, hard, center, cv2.NORMAL_CLONE), cv2.COLOR_BGR2RGB)
    return feather_blend(background, cloned, alpha)


def blend(background: np.ndarray, foreground: np.ndarray, alpha: np.ndarray, method: str = "feather") -> np.ndarray:
    """Blend with ``feather`` or ``poisson``."""
    if method == "feather":
        return feather_blend(background, foreground, alpha)
    if method == "poisson":
        return poisson_blend(background, foreground, alpha)
    raise ValueError(f"unknown blend method {method!r}")
