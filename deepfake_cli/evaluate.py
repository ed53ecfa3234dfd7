"""Objective swap quality: identity transfer, expression/pose retention, background fidelity.

``evaluate`` compares a source clip with its converted clip, frame by frame, using offline models:

* **identity transfer** — share of converted frames whose face descriptor (dlib's 128-D ResNet)
  is within dlib's same-person distance (0.6) of identity B *and* nearer B than A by ``margin``,
  so a blurred average face does not count;
* **landmark NME** — mean distance between the source frame's and converted frame's 68 landmarks,
  normalised by the source's inter-ocular distance (outer eye corners, as in the 300-W benchmark):
  expression and pose retention;
* **background PSNR** — PSNR between source and converted pixels outside the (dilated) face hull;
* **sharpness** — variance of the Laplacian inside the source face's landmark hull, converted over
  source (summed over frames): 1 keeps the source's detail, a blurred swap scores well below 1;
* **mouth agreement** — share of frames whose source face has 68 landmarks where the converted
  face's inner-lip gap (mean distance of the paired inner-lip points 61-67, 62-66, 63-65, over that
  face's inter-ocular distance, outer eye corners) is within 0.05 of the source's: an open mouth stays open, a closed
  one closed. A converted frame with no 68-point face there counts as disagreeing; frames whose
  source shows no 68-point face are left out;
* **seam strength** — the colour step across the blend edge of the converted frame over the
  source's own step at the same place (summed over frames): 1 is no worse than the source's edges.
  The step is taken around the source face's landmark hull at ``dfk convert``'s default mask edge
  (hull eroded by 12% of the inter-ocular distance, feather sigma 8% of it): a band just inside the
  feather (2-3 sigmas inside the edge) and one just outside it (2-3 sigmas outside), cut into 16
  angular sectors around the face; per sector the RGB distance between the two bands' mean colours,
  averaged over sectors. ``seam_gradient`` is the same ratio for the mean grey gradient magnitude
  inside the feather (edge +/- 2 sigmas), which catches hard edges a colour average smooths over;
* **faces found** — share of converted frames where a face is detected.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from deepfake_cli.errors import InputError, NoFaceError
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, face_descriptor, found_descriptors
from deepfake_cli.faces.masks import BLUR_SHARE, ERODE_SHARE, hull_mask, soft_hull_mask
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.media.images import laplacian_variance
from deepfake_cli.media.sources import media_frames

REFERENCE_FRAMES = 32
MOUTH_TOLERANCE = 0.05
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
SEAM_SECTORS = 16
SEAM_MIN_PIXELS = 4


@dataclass
class SwapQuality:
    """The figures ``dfk evaluate`` reports."""

    frames: int
    faces_found: float
    identity_transfer: float
    distance_to_a: float
    distance_to_b: float
    landmark_nme: float
    background_psnr_db: float
    sharpness: float
    mouth_agreement: float
    seam_strength: float
    seam_gradient: float
    same_person_distance: float
    margin: float

    def to_json(self) -> dict[str, float | int | None]:
        """JSON-safe values, rounded; a non-finite figure (e.g. PSNR of identical pixels) is null."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def identity_reference(path: str | Path, backend: FaceBackend, max_frames: int = REFERENCE_FRAMES) -> np.ndarray:
    """Mean face descriptor over the faces in a folder, image or video (the largest face each)."""
    descriptors = found_descriptors(path, backend, max_frames)
    if not descriptors:
        raise NoFaceError("no face found in the identity reference", str(path))
    return np.mean(descriptors, axis=0)


def _face_region(landmarks: np.ndarray, shape: tuple[int, ...], grow: float = 0.25) -> np.ndarray:
    """Boolean mask of the landmarks' convex hull, grown by ``grow`` x the face width."""
    radius = max(grow * float(landmarks[:, 0].max() - landmarks[:, 0].min()), 1.0)
    return soft_hull_mask(landmarks, shape, erode=-radius, blur=0) > 0


def outer_eye_distance(landmarks: np.ndarray) -> float:
    """Inter-ocular distance of the 300-W convention: between the outer eye corners (36 and 45)."""
    return max(float(np.linalg.norm(landmarks[36] - landmarks[45])), 1e-6)


def landmark_nme(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean point distance between two 68-point sets over the reference's outer-eye distance."""
    return float(np.linalg.norm(reference - other, axis=1).mean()) / outer_eye_distance(reference)


def mouth_gap(landmarks: np.ndarray) -> float:
    """Inner-lip gap of a 68-point face in outer-eye distances (about 0 for a closed mouth)."""
    upper, lower = (np.asarray([landmarks[i] for i in side], dtype=np.float64) for side in zip(*INNER_LIP_PAIRS))
    return float(np.linalg.norm(lower - upper, axis=1).mean()) / outer_eye_distance(landmarks)


def mouths_agree(source: np.ndarray, converted: np.ndarray | None, tolerance: float = MOUTH_TOLERANCE) -> bool:
    """Whether the converted face's inner-lip gap is within ``tolerance`` of the source's (no face: no)."""
    return converted is not None and abs(mouth_gap(converted) - mouth_gap(source)) <= tolerance


def seam_steps(source: np.ndarray, converted: np.ndarray, landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """``(converted colour step, source colour step, converted gradient, source gradient)`` at the
    default blend edge of the face with ``landmarks`` (the source's); see the module docstring.
    The edge uses the masks' eye distance (eye centres), as ``dfk convert`` does."""
    iod = inter_ocular_distance(landmarks)
    edge, sigma = ERODE_SHARE * iod, BLUR_SHARE * iod
    height, width = source.shape[:2]
    reach = 3 * sigma + 2
    x0, y0 = np.floor(landmarks.min(axis=0) - reach).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0) + reach).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    points = landmarks - np.array([x0, y0], dtype=np.float64)
    hard = hull_mask(points, (y1 - y0, x1 - x0)).astype(np.uint8)
    distance = (cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)
                - cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5) - np.float32(edge))
    inner = (distance >= 2 * sigma) & (distance < 3 * sigma)
    outer = (distance <= -2 * sigma) & (distance > -3 * sigma)
    rows, cols = np.mgrid[0:y1 - y0, 0:x1 - x0]
    centre = points.mean(axis=0)
    angle = np.arctan2(rows - centre[1], cols - centre[0])
    sector = np.minimum(((angle + np.pi) / (2 * np.pi) * SEAM_SECTORS).astype(int), SEAM_SECTORS - 1)
    counts_in = np.bincount(sector[inner], minlength=SEAM_SECTORS)
    counts_out = np.bincount(sector[outer], minlength=SEAM_SECTORS)
    usable = (counts_in >= SEAM_MIN_PIXELS) & (counts_out >= SEAM_MIN_PIXELS)
    feather = np.abs(distance) <= 2 * sigma
    figures = []
    for frame in (converted, source):
        crop = frame[y0:y1, x0:x1].astype(np.float64)

        def means(band: np.ndarray, counts: np.ndarray) -> np.ndarray:
            sums = np.stack([np.bincount(sector[band], crop[..., c][band], SEAM_SECTORS) for c in range(3)], axis=1)
            return sums[usable] / counts[usable, None]

        step = np.linalg.norm(means(inner, counts_in) - means(outer, counts_out), axis=1)
        grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        gradient = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        figures += [float(step.mean()) if step.size else 0.0, float(gradient[feather].mean()) if feather.any() else 0.0]
    return figures[0], figures[2], figures[1], figures[3]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _paired(source: str | Path, converted: str | Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Source and converted frames side by side; a length or size mismatch is an ``InputError``."""
    src, out = media_frames(source), media_frames(converted)
    missing = object()
    for a, b in itertools.zip_longest(src, out, fillvalue=missing):
        if a is missing or b is missing:
            raise InputError("source and converted clips have different frame counts", str(converted))
        if a.shape != b.shape:
            raise InputError(f"frame sizes differ: source {a.shape[1]}x{a.shape[0]}, converted {b.shape[1]}x{b.shape[0]}",
                             str(converted))
        yield a, b


class _SquaredError:
    """A running mean squared error over pixel sets, for PSNR without keeping the pixels."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.total += float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        self.count += a.size

    def psnr(self) -> float:
        """PSNR in dB over everything added; inf when identical, nan when nothing was added."""
        if self.count == 0:
            return float("nan")
        mse = self.total / self.count
        return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def evaluate(
    source: str | Path,
    converted: str | Path,
    identity_a: str | Path,
    identity_b: str | Path,
    margin: float = 0.1,
    progress: bool = True,
    backend: FaceBackend | None = None,
) -> SwapQuality:
    """Measure how well ``converted`` puts identity B on ``source`` (identity A)."""
    backend = backend or create_backend("offline")
    ref_a = identity_reference(identity_a, backend)
    ref_b = identity_reference(identity_b, backend)
    frames = found = transferred = 0
    dist_a, dist_b, nme = [], [], []
    background = _SquaredError()
    detail = {"source": 0.0, "converted": 0.0}
    seam = np.zeros(4)  # converted step, source step, converted gradient, source gradient
    mouths = mouths_agreeing = 0
    for src, out in tqdm(_paired(source, converted), unit="frame", disable=not progress, desc="evaluate"):
        frames += 1
        src_faces, out_faces = backend.detect(src), backend.detect(out)
        if src_faces:
            region = _face_region(src_faces[0].landmarks, src.shape)
            background.add(src[~region], out[~region])
            hull = hull_mask(src_faces[0].landmarks, src.shape) > 0
            detail["source"] += laplacian_variance(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY), hull)
            detail["converted"] += laplacian_variance(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), hull)
        if src_faces and src_faces[0].has_68:
            seam += seam_steps(src, out, src_faces[0].landmarks)
            mouths += 1
            mouths_agreeing += mouths_agree(src_faces[0].landmarks,
                                            out_faces[0].landmarks if out_faces and out_faces[0].has_68 else None)
        if not out_faces:
            continue
        found += 1
        descriptor = face_descriptor(out, out_faces[0])
        da, db = float(np.linalg.norm(descriptor - ref_a)), float(np.linalg.norm(descriptor - ref_b))
        dist_a.append(da)
        dist_b.append(db)
        transferred += db < SAME_PERSON_DISTANCE and da - db > margin
        if src_faces and src_faces[0].has_68 and out_faces[0].has_68:
            nme.append(landmark_nme(src_faces[0].landmarks, out_faces[0].landmarks))
    if frames == 0:
        raise InputError("no frames to compare", str(converted))
    return SwapQuality(
        frames=frames,
        faces_found=found / frames,
        identity_transfer=transferred / frames,
        distance_to_a=float(np.mean(dist_a)) if dist_a else float("nan"),
        distance_to_b=float(np.mean(dist_b)) if dist_b else float("nan"),
        landmark_nme=float(np.mean(nme)) if nme else float("nan"),
        background_psnr_db=background.psnr(),
        sharpness=_ratio(detail["converted"], detail["source"]),
        mouth_agreement=mouths_agreeing / mouths if mouths else float("nan"),
        seam_strength=_ratio(seam[0], seam[1]),
        seam_gradient=_ratio(seam[2], seam[3]),
        same_person_distance=SAME_PERSON_DISTANCE,
        margin=margin,
    )
