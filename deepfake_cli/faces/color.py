"""Colour matching of a swapped face to the original face region.

Statistics are taken only inside a region (the hard face mask), so background and hair do not
pull the colours. Methods: ``avg`` (mean shift per RGB channel), ``reinhard`` (mean and standard
deviation per L*a*b* channel, Reinhard et al. 2001), ``hist`` (per-channel histogram matching),
``band`` (``reinhard``, then a smooth, local mean shift measured in a band just inside the
region's edge, where the seam is) and ``none``. OpenCV's masked statistics keep this cheap on HD
frames.

``band``: after ``reinhard`` over the whole region, the band is the region's pixels within
``BAND_SHARE`` x sqrt(region area) of its edge (about a third of the eye distance on a face hull).
The RGB difference target - face is averaged over the band with a Gaussian of twice that width (a
normalised convolution), so each pixel gets the shift of the band nearest it: one cheek can be lit
differently from the other, and the face meets the frame's colours all along the edge. Far from
the band the shift falls back to the band's mean.
"""

from __future__ import annotations

import cv2
import numpy as np

COLOR_METHODS = ("avg", "reinhard", "hist", "band", "none")
MIN_PIXELS = 16
BAND_SHARE = 0.16
BAND_PRIOR = 0.05  # weight of the band's mean shift where no band pixel is near


def _avg(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    shift = np.subtract(cv2.mean(target, mask=region), cv2.mean(face, mask=region))
    return cv2.add(face, tuple(float(v) for v in shift))


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def _reinhard(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    source_lab = _lab(face)
    src_mean, src_std = cv2.meanStdDev(source_lab, mask=region)
    dst_mean, dst_std = cv2.meanStdDev(_lab(target), mask=region)
    gain = (dst_std / np.maximum(src_std, 1e-3)).ravel().astype(np.float32)
    offset = (dst_mean.ravel() - src_mean.ravel() * gain).astype(np.float32)
    matched = cv2.cvtColor(source_lab * gain + offset, cv2.COLOR_Lab2RGB)
    return cv2.convertScaleAbs(np.clip(matched, 0.0, 1.0), alpha=255.0)


def _hist(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64)
    channels = []
    for channel in range(3):
        src_cdf = np.cumsum(cv2.calcHist([face], [channel], region, [256], [0, 256]).ravel())
        dst_cdf = np.cumsum(cv2.calcHist([target], [channel], region, [256], [0, 256]).ravel())
        lookup = np.interp(src_cdf / src_cdf[-1], dst_cdf / dst_cdf[-1], levels)
        channels.append(cv2.LUT(np.ascontiguousarray(face[..., channel]), np.round(lookup).astype(np.uint8)))
    return cv2.merge(channels)


def _band(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    face = _reinhard(face, target, region)
    width = max(BAND_SHARE * float(np.sqrt(cv2.countNonZero(region))), 2.0)
    inside = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_5)
    band = ((inside > 0) & (inside <= width)).astype(np.float32)
    difference = (target.astype(np.float32) - face.astype(np.float32)) * band[..., None]
    mean = difference.reshape(-1, 3).sum(axis=0) / max(float(band.sum()), 1.0)
    local, weight = _smooth(difference, 2 * width), _smooth(band, 2 * width)[..., None]
    shift = (local + np.float32(BAND_PRIOR) * mean) / (weight + np.float32(BAND_PRIOR))
    return cv2.convertScaleAbs(np.clip(face.astype(np.float32) + shift, 0, 255))


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a wide ``sigma``, computed at a quarter of the sigma's scale in pixels
    (the result is smooth, so shrinking first costs no accuracy and most of the time)."""
    factor = max(int(sigma // 4), 1)
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(width // factor, 1), max(height // factor, 1)), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


_METHODS = {"avg": _avg, "reinhard": _reinhard, "hist": _hist, "band": _band}


def match_color(face: np.ndarray, target: np.ndarray, region: np.ndarray, method: str = "avg") -> np.ndarray:
    """Recolour ``face`` (RGB uint8) so that inside ``region`` it matches ``target``.

    ``face`` and ``target`` have the same shape; ``region`` is a boolean (or 0/1 uint8) mask of
    that size. With fewer than 16 pixels in the region (or ``none``) the face is returned as is.
    """
    if method not in COLOR_METHODS:
        raise ValueError(f"unknown colour method {method!r}")
    mask = np.asarray(region, dtype=np.uint8)
    if method == "none" or cv2.countNonZero(mask) < MIN_PIXELS:
        return face
    return _METHODS[method](np.ascontiguousarray(face), np.ascontiguousarray(target), mask)
