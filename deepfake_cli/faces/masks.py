"""Face masks for blending: convex hull of the landmarks, eroded and feathered.

Masks are float32 arrays in [0, 1]. The defaults come from what blended without seams on real
faces: erode by ~12% of the inter-ocular distance (keeps the edge inside the face, away from
hair and background) and feather with a Gaussian of sigma ~8% of it.

The hull mask is built from the signed distance to the hull's edge: eroding is a threshold on it
and feathering maps it through the Gaussian's CDF, which is what blurring a straight edge gives.
That costs the same for any erode or blur width, where a morphological erosion and a Gaussian
blur grow with them (slow on HD faces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from deepfake_cli.faces.smoothing import inter_ocular_distance

MASK_KINDS = ("learned", "hull", "combined", "occlusion")
ERODE_SHARE = 0.12
BLUR_SHARE = 0.08
_CDF_STEPS = 64  # table entries per sigma
_CDF_RANGE = 4  # sigmas each side
_GAUSS_CDF = np.array([0.5 * (1.0 + math.erf(i / _CDF_STEPS / math.sqrt(2.0)))
                       for i in range(-_CDF_RANGE * _CDF_STEPS, _CDF_RANGE * _CDF_STEPS + 1)], dtype=np.float32)


@dataclass(frozen=True)
class MaskShape:
    """How to erode and feather a mask: pixels, or None for the share of the inter-ocular distance."""

    erode: float | None = None
    blur: float | None = None

    def resolve(self, landmarks: np.ndarray) -> tuple[float, float]:
        """``(erode_px, blur_px)`` for a face with these landmarks."""
        iod = inter_ocular_distance(landmarks)
        erode = ERODE_SHARE * iod if self.erode is None else self.erode
        blur = BLUR_SHARE * iod if self.blur is None else self.blur
        return float(erode), float(blur)


def _hull_u8(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    points = np.round(np.asarray(landmarks, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 1, lineType=cv2.LINE_8, shift=4)
    return mask


def hull_mask(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Hard (0/1) float32 mask of the landmarks' convex hull in an image of ``shape``."""
    return _hull_u8(landmarks, shape).astype(np.float32)


def soft_hull_mask(landmarks: np.ndarray, shape: tuple[int, ...], erode: float, blur: float,
                   keep: np.ndarray | None = None) -> np.ndarray:
    """The hull eroded by ``erode`` px (grown when negative) and feathered with sigma ``blur`` px.

    ``keep`` (uint8 of ``shape``, non-zero where allowed) cuts the hull before eroding, so its cut
    edges are eroded and feathered like the hull's own (the occlusion mask).
    """
    hard = _hull_u8(landmarks, shape)
    if keep is not None:
        hard &= (keep > 0).astype(np.uint8)
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    distance = inside - outside - np.float32(erode)  # > 0 inside the eroded hull
    if blur <= 0:
        return (distance > 0).astype(np.float32)
    # the eroded mask's edge lies half a pixel outside its last pixel centres
    index = (distance + np.float32(0.5)) * np.float32(_CDF_STEPS / blur) + np.float32(_CDF_RANGE * _CDF_STEPS)
    np.clip(index, 0, len(_GAUSS_CDF) - 1, out=index)
    return _GAUSS_CDF[index.astype(np.int32)]


def erode_mask(mask: np.ndarray, pixels: float) -> np.ndarray:
    """Shrink a (soft) mask by ``pixels`` (grow it when negative) with an elliptic kernel."""
    radius = int(round(abs(pixels)))
    if radius == 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    operation = cv2.erode if pixels > 0 else cv2.dilate
    return operation(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def feather_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soften the mask's edge with a Gaussian of ``sigma`` pixels (0 leaves it as is)."""
    if sigma <= 0:
        return mask
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)


def blend_mask(
    kind: str,
    landmarks: np.ndarray,
    shape: tuple[int, ...],
    learned: np.ndarray | None = None,
    mask_shape: MaskShape = MaskShape(),
    face_region: np.ndarray | None = None,
) -> np.ndarray:
    """The soft mask of one face: ``hull``, ``learned`` (the model's), ``combined`` (their product)
    or ``occlusion`` (the hull cut to ``face_region``, where a face parser saw face classes: uint8,
    non-zero on skin, brows, eyes, nose, mouth and lips).

    ``landmarks``, ``learned`` and ``face_region`` are in the coordinates of an image of ``shape``.
    The hull (and the occlusion cut's edges) are eroded by the erode setting (the learned mask only
    when it is given explicitly); all are feathered by the blur setting.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}")
    if kind == "occlusion" and face_region is None:
        raise ValueError("mask kind 'occlusion' needs a face region")
    if kind in ("learned", "combined") and learned is None:
        raise ValueError(f"mask kind {kind!r} needs a learned mask")
    erode, blur = mask_shape.resolve(landmarks)
    if kind in ("hull", "occlusion"):
        return soft_hull_mask(landmarks, shape, erode, blur, face_region if kind == "occlusion" else None)
    assert learned is not None
    soft = np.clip(feather_mask(erode_mask(learned.astype(np.float32, copy=False), mask_shape.erode or 0.0), blur),
                   0.0, 1.0)
    return soft if kind == "learned" else soft_hull_mask(landmarks, shape, erode, blur) * soft
