"""Self-blended images: fake faces made from one real face, for training detectors on real data only.

The idea follows Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): blend a face with an
altered copy of itself, so the fake carries the artefacts of a face swap (a blending boundary,
a colour and sharpness mismatch, a slight misalignment) without a second identity.

Both copies come from the image: the *source* is shifted and scaled a little about the face, and
one of the two copies, drawn half the time each (``altered``), is also altered: colour, contrast,
brightness and hue shifts, then one of blur, sharpening, down-then-up-scaling or JPEG loss. So the
face is sometimes the worse copy and sometimes the better one, and what marks a fake is the
mismatch at the boundary, not a degraded face (real footage has plenty of those). The mask is the
landmarks' convex hull deformed by a few smooth radial waves, eroded or dilated,
Gaussian-feathered and scaled to the blend ratio::

    fake = mask * source + (1 - mask) * target

so every pixel where the mask is 0 equals the target copy (``target_copy``): the original, or the
whole image altered. All sizes are shares of the face (the inter-ocular distance or the landmarks'
extent), so the same parameters fit a 128 px crop and a face in an HD frame alike. Everything is a pure function of the image, its 68 iBUG landmarks and
the parameters, and the parameters come from a seeded ``numpy`` generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.media.images import gaussian_blur, jpeg_compressed, rescaled

LABEL = 1  # a self-blended image is a fake
REGIONS = ("face", "inner")  # hull of all 68 points; of the brows, eyes, nose and mouth (17..67)
QUALITY_KINDS = ("blur", "sharpen", "resize", "jpeg")
ALTERED = ("source", "target")  # which copy the colour and quality changes apply to
RATIOS = (0.25, 0.5, 0.75, 1.0)
HARMONICS = 4  # radial waves deforming the hull: 1..4 bumps around the face
POLYGON_POINTS = 96  # hull resampled to this many points before it is deformed

# per-frame jitter of a sequence: each field moves by at most this much (times ``jitter``) from
# the sequence's drawn value; the other fields stay identical across frames
FRAME_JITTER: dict[str, float] = {
    "harmonics": 0.005, "erode": 0.01, "blur": 0.005, "shift": 0.004, "scale": 0.004,
    "hue": 1.0, "brightness": 0.005,
}


@dataclass(frozen=True)
class SBIParams:
    """The random choices behind one self-blended image (sizes are shares of the face).

    ``harmonics``/``phases``: amplitude (share of the hull's radius) and phase (radians) of the
    radial waves k = 1..4 that deform the hull; ``erode``: erosion in inter-ocular distances
    (negative dilates); ``blur``: mask feather sigma in inter-ocular distances; ``ratio``: the
    mask's maximum; ``shift``: source translation (x, y) in face sizes; ``scale``: source scale
    (x, y) about the face centre; ``hue`` (degrees), ``saturation`` (gain), ``brightness`` and
    ``channel_shift`` (offsets on 0..1 RGB), ``contrast`` (gain about mid grey); ``quality``: one
    of ``QUALITY_KINDS`` with ``quality_amount`` the blur sigma (inter-ocular distances), the
    sharpening gain, the resize factor or the JPEG quality; ``altered``: the copy (one of
    ``ALTERED``) that the colour and quality changes apply to.
    """

    region: str
    harmonics: tuple[float, ...]
    phases: tuple[float, ...]
    erode: float
    blur: float
    ratio: float
    shift: tuple[float, ...]
    scale: tuple[float, ...]
    hue: float
    saturation: float
    brightness: float
    contrast: float
    channel_shift: tuple[float, ...]
    quality: str
    quality_amount: float
    altered: str

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain Python values (for logs and JSON)."""
        return asdict(self)


@dataclass
class SelfBlend:
    """One self-blended fake (RGB uint8), the float32 mask it was blended with, its parameters."""

    fake: np.ndarray
    mask: np.ndarray
    params: SBIParams
    label: int = LABEL


@dataclass
class SelfBlendSequence:
    """A self-blended clip: per-frame fakes, masks and parameters, and the sequence's drawn ``base``."""

    fakes: list[np.ndarray]
    masks: list[np.ndarray]
    params: list[SBIParams]
    base: SBIParams
    label: int = LABEL


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """A numpy generator from a generator (returned as is) or an integer seed."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _quality_amount(kind: str, rng: np.random.Generator) -> float:
    """Blur sigma (inter-ocular distances), sharpening gain, resize factor or JPEG quality."""
    if kind == "jpeg":
        return float(rng.integers(30, 81))
    low, high = {"blur": (0.02, 0.06), "sharpen": (0.5, 1.5), "resize": (0.4, 0.8)}[kind]
    return float(rng.uniform(low, high))


def draw_params(rng: np.random.Generator | int) -> SBIParams:
    """Draw one set of self-blend parameters."""
    rng = as_generator(rng)
    quality = str(rng.choice(QUALITY_KINDS))
    amount = _quality_amount(quality, rng)
    k = np.arange(1, HARMONICS + 1)
    return SBIParams(
        region=str(rng.choice(REGIONS, p=(0.75, 0.25))),
        harmonics=_floats(rng.uniform(0.0, 0.1, HARMONICS) / k),
        phases=_floats(rng.uniform(0.0, 2 * math.pi, HARMONICS)),
        erode=float(rng.uniform(-0.1, 0.2)),
        blur=float(rng.uniform(0.05, 0.15)),
        ratio=float(rng.choice(RATIOS)),
        shift=_floats(rng.uniform(-0.03, 0.03, 2)),
        scale=_floats(rng.uniform(0.96, 1.04, 2)),
        hue=float(rng.uniform(-10.0, 10.0)),
        saturation=float(rng.uniform(0.8, 1.2)),
        brightness=float(rng.uniform(-0.08, 0.08)),
        contrast=float(rng.uniform(0.85, 1.15)),
        channel_shift=_floats(rng.uniform(-0.04, 0.04, 3)),
        quality=quality,
        quality_amount=amount,
        altered=str(rng.choice(ALTERED)),
    )


def jitter_params(params: SBIParams, rng: np.random.Generator | int, jitter: float = 1.0) -> SBIParams:
    """``params`` with each ``FRAME_JITTER`` field moved uniformly by at most ``jitter`` times its bound."""
    rng = as_generator(rng)
    changes: dict[str, Any] = {}
    for field in fields(params):
        bound = FRAME_JITTER.get(field.name)
        if bound is None:
            continue
        value = getattr(params, field.name)
        moved = np.asarray(value, dtype=np.float64) + rng.uniform(-1.0, 1.0, np.shape(value)) * bound * jitter
        changes[field.name] = _floats(moved) if isinstance(value, tuple) else float(moved)
    return replace(params, **changes)


def _check(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68x2 iBUG landmarks, got shape {points.shape}")
    return points


def face_size(landmarks: np.ndarray) -> float:
    """The larger side of the landmarks' bounding box, in pixels."""
    return float(np.ptp(np.asarray(landmarks, dtype=np.float64), axis=0).max())


def _roll(landmarks: np.ndarray) -> float:
    """The face's in-plane angle (radians) from the eye line, so the waves turn with the head."""
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    return float(math.atan2(right[1] - left[1], right[0] - left[0]))


def _resampled_hull(points: np.ndarray, count: int = POLYGON_POINTS) -> np.ndarray:
    """The convex hull of ``points`` as ``count`` points evenly spaced along its outline."""
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    closed = np.vstack([hull, hull[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    at = np.linspace(0.0, arc[-1], count, endpoint=False)
    return np.stack([np.interp(at, arc, closed[:, 0]), np.interp(at, arc, closed[:, 1])], axis=1)


def deformed_hull(landmarks: np.ndarray, params: SBIParams) -> np.ndarray:
    """The region's hull with each point pushed along its ray from the centre by the radial waves."""
    points = landmarks if params.region == "face" else landmarks[17:]
    outline = _resampled_hull(points)
    centre = outline.mean(axis=0)
    offsets = outline - centre
    angles = np.arctan2(offsets[:, 1], offsets[:, 0]) - _roll(landmarks)
    waves = sum(a * np.cos((k + 1) * angles + phase)
                for k, (a, phase) in enumerate(zip(params.harmonics, params.phases)))
    return centre + offsets * (1.0 + waves)[:, None]


def _mask_roi(outline: np.ndarray, pad: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Rows and columns of the image around ``outline`` grown by ``pad`` pixels."""
    x0, y0 = np.floor(outline.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(outline.max(axis=0) + pad).astype(int) + 1
    height, width = shape[:2]
    rows, cols = slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width))
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise ValueError("the face lies outside the image")
    return rows, cols


def _fill(outline: np.ndarray, size: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """A 0/1 uint8 mask of ``size`` (h, w) with the polygon (in image pixels) filled."""
    mask = np.zeros(size, dtype=np.uint8)
    points = np.round((outline - np.asarray(origin, dtype=np.float64)) * 16).astype(np.int32)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def _erode(hard: np.ndarray, pixels: float) -> np.ndarray:
    """Shrink a 0/1 mask by ``pixels`` (grow it when negative) through its signed distance."""
    if pixels == 0:
        return hard
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    eroded = (inside - outside > pixels).astype(np.uint8)
    return eroded if eroded.any() else hard  # never erode a small face away


def _blend_roi(
    landmarks: np.ndarray, params: SBIParams, shape: tuple[int, ...],
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The region the blend touches and the soft mask inside it (0 on its border)."""
    iod = inter_ocular_distance(landmarks)
    erode, sigma = params.erode * iod, max(params.blur * iod, 0.5)
    outline = deformed_hull(landmarks, params)
    rows, cols = _mask_roi(outline, max(-erode, 0.0) + 4 * sigma + 3, shape)
    hard = _erode(_fill(outline, (rows.stop - rows.start, cols.stop - cols.start), (cols.start, rows.start)), erode)
    soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_CONSTANT)
    peak = float(soft.max())
    soft = soft * np.float32(params.ratio / peak) if peak > 0 else soft
    return (rows, cols), np.clip(soft, 0.0, 1.0)


def sbi_mask(image_shape: tuple[int, ...], landmarks: np.ndarray, params: SBIParams) -> np.ndarray:
    """The float32 HxW mask (max ``params.ratio``) a self-blend of this face uses."""
    points = np.asarray(landmarks, dtype=np.float64)
    (rows, cols), soft = _blend_roi(points, params, image_shape)
    mask = np.zeros(image_shape[:2], dtype=np.float32)
    mask[rows, cols] = soft
    return mask


def _misaligned(image: np.ndarray, landmarks: np.ndarray, params: SBIParams, roi: tuple[slice, slice]) -> np.ndarray:
    """The ROI of the image shifted and scaled about the face centre (the source's misalignment)."""
    rows, cols = roi
    size = face_size(landmarks)
    cx, cy = (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2
    sx, sy = params.scale
    matrix = np.array([[sx, 0.0, cx - sx * cx + params.shift[0] * size - cols.start],
                       [0.0, sy, cy - sy * cy + params.shift[1] * size - rows.start]])
    return cv2.warpAffine(image, matrix, (cols.stop - cols.start, rows.stop - rows.start),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def shift_colour(rgb: np.ndarray, params: SBIParams) -> np.ndarray:
    """Hue, saturation, contrast, brightness and per-channel shifts of a float32 0..1 RGB image.

    A grey image stays grey (its channel shifts are averaged): a tint would mark the fake by a
    colour its real twin never has, and a detector trained on grey photographs would learn
    "colour means fake"."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + params.hue, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * params.saturation, 0.0, 1.0)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    shift = np.asarray(params.channel_shift, np.float32)
    if is_grey(rgb):
        shift = np.full_like(shift, shift.mean())
    out = (out - 0.5) * params.contrast + 0.5 + params.brightness + shift
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def is_grey(rgb: np.ndarray, tolerance: float = 2.0 / 255.0) -> bool:
    """Whether a 0..1 float (or uint8) RGB image has no colour: every pixel's channels within
    ``tolerance`` (in 0..1 units) of each other."""
    scale = 255.0 if rgb.dtype == np.uint8 else 1.0
    spread = rgb.max(axis=-1).astype(np.float32) - rgb.min(axis=-1).astype(np.float32)
    return float(spread.max()) <= tolerance * scale


def degrade(rgb: np.ndarray, params: SBIParams, iod: float) -> np.ndarray:
    """Blur, sharpen, down-then-up-scale or JPEG-compress a uint8 RGB image (``params.quality``)."""
    amount = params.quality_amount
    if params.quality == "blur":
        return gaussian_blur(rgb, max(amount * iod, 0.3))
    if params.quality == "sharpen":
        smooth = gaussian_blur(rgb, max(0.03 * iod, 0.5))
        return cv2.addWeighted(rgb, 1.0 + amount, smooth, -amount, 0.0)
    if params.quality == "resize":
        return rescaled(rgb, amount)
    if params.quality == "jpeg":
        return jpeg_compressed(rgb, int(amount))
    raise ValueError(f"unknown quality kind {params.quality!r}")


def _alter(rgb: np.ndarray, params: SBIParams, iod: float) -> np.ndarray:
    """A uint8 RGB image colour-shifted, then degraded."""
    coloured = np.rint(shift_colour(rgb.astype(np.float32) / np.float32(255.0), params) * 255.0).astype(np.uint8)
    return degrade(coloured, params, iod)


def target_copy(image: np.ndarray, landmarks: np.ndarray, params: SBIParams) -> np.ndarray:
    """The copy the face is blended into (what the fake shows outside the mask): the image itself,
    or with ``altered`` ``target`` the whole image altered."""
    return image if params.altered == "source" else _alter(image, params, inter_ocular_distance(landmarks))


def _source(image: np.ndarray, landmarks: np.ndarray, params: SBIParams, roi: tuple[slice, slice]) -> np.ndarray:
    """The source copy inside the ROI: misaligned, and altered with ``altered`` ``source`` (uint8)."""
    moved = _misaligned(image, landmarks, params, roi)
    return _alter(moved, params, inter_ocular_distance(landmarks)) if params.altered == "source" else moved


def render(image: np.ndarray, landmarks: np.ndarray, params: SBIParams) -> SelfBlend:
    """The self-blend of ``image`` (RGB uint8) and its 68 landmarks for fixed ``params``."""
    points = _check(image, landmarks)
    roi, soft = _blend_roi(points, params, image.shape)
    backdrop = target_copy(image, points, params)
    target = backdrop[roi].astype(np.float32)
    weight = soft[..., None]
    blended = weight * _source(image, points, params, roi).astype(np.float32) + (1.0 - weight) * target
    fake = backdrop.copy()
    fake[roi] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], dtype=np.float32)
    mask[roi] = soft
    return SelfBlend(fake=fake, mask=mask, params=params)


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator | int) -> SelfBlend:
    """Draw parameters from ``rng`` (generator or seed) and self-blend one face image."""
    return render(image, landmarks, draw_params(rng))


def self_blend_sequence(
    images: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    rng: np.random.Generator | int,
    jitter: float = 1.0,
) -> SelfBlendSequence:
    """Self-blend T frames of one face with parameters drawn once and jittered per frame.

    Each frame's mask follows that frame's landmarks; each frame's parameters differ from the
    drawn ``base`` by at most ``jitter * FRAME_JITTER`` (0 keeps them identical).
    """
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} frames but {len(landmarks)} landmark sets")
    rng = as_generator(rng)
    base = draw_params(rng)
    blends = [render(image, points, jitter_params(base, rng, jitter)) for image, points in zip(images, landmarks)]
    return SelfBlendSequence(fakes=[b.fake for b in blends], masks=[b.mask for b in blends],
                             params=[b.params for b in blends], base=base)
