"""Face alignment: a similarity transform (Umeyama) from landmarks to a mean-face template.

The template (``template.py``) is normalised so that the inner-face points 17-67 (brows to lower
lip) span the unit square. ``coverage`` is the share of the aligned crop's width that square
takes: smaller values keep more chin, forehead and background.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_cli.faces.template import MEAN_FACE_68

INNER = slice(17, 68)
# Template points matched by the 5-point fallback: eye centres, nose tip, mouth corners.
FIVE_POINT_TEMPLATE = np.stack([
    MEAN_FACE_68[36:42].mean(axis=0),
    MEAN_FACE_68[42:48].mean(axis=0),
    MEAN_FACE_68[30],
    MEAN_FACE_68[48],
    MEAN_FACE_68[54],
])


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (3x3) mapping points ``src`` (Nx2) onto ``dst`` (Nx2)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(axis=0).sum() if estimate_scale else 1.0
    transform = np.eye(dim + 1)
    transform[:dim, :dim] = scale * rotation
    transform[:dim, dim] = dst_mean - scale * rotation @ src_mean
    return transform


def template_points(size: int, coverage: float, count: int = 68) -> np.ndarray:
    """Template landmarks (68 or 5) in pixel coordinates of a ``size`` px aligned crop."""
    unit = MEAN_FACE_68 if count == 68 else FIVE_POINT_TEMPLATE
    return ((unit - 0.5) * coverage + 0.5) * size


def alignment_matrix(landmarks: np.ndarray, size: int, coverage: float) -> np.ndarray:
    """The 2x3 matrix taking frame pixels to a ``size`` px aligned face."""
    if len(landmarks) == 68:
        src, dst = landmarks[INNER], template_points(size, coverage)[INNER]
    else:
        src, dst = landmarks, template_points(size, coverage, count=5)
    return umeyama(src, dst)[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to Nx2 points."""
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned face out of ``image``.

    When the face shrinks, it is warped at an integer multiple of ``size`` (so each output pixel
    of that warp covers at most one source pixel) and reduced with area averaging, which avoids
    the aliasing of a direct bilinear warp.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = min(int(np.ceil(1.0 / max(scale, 1e-6))), 8)
    if factor <= 1:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    big = cv2.warpAffine(image, matrix * factor, (factor * size, factor * size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def unwarp_face(face: np.ndarray, matrix: np.ndarray, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp an aligned face back into frame coordinates.

    Returns the warped face (frame size) and a float mask in [0, 1] of where it has valid pixels.
    The face is interpolated bicubically: it is usually enlarged, where bilinear would blur it.
    """
    height, width = frame_shape[:2]
    inverse = cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_CUBIC | inverse,
                          borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(face.shape[:2], dtype=np.float32)
    valid = cv2.warpAffine(ones, matrix, (width, height), flags=cv2.INTER_LINEAR | inverse,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return back, valid
