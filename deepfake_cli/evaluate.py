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
from deepfake_cli.faces.masks import hull_mask, soft_hull_mask
from deepfake_cli.media.images import laplacian_variance
from deepfake_cli.media.sources import media_frames

REFERENCE_FRAMES = 32


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


def landmark_nme(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean point distance between two 68-point sets over the reference's inter-ocular distance.

    Inter-ocular distance follows the 300-W convention: between the outer eye corners (36 and 45).
    """
    iod = float(np.linalg.norm(reference[36] - reference[45]))
    return float(np.linalg.norm(reference - other, axis=1).mean()) / max(iod, 1e-6)


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
    for src, out in tqdm(_paired(source, converted), unit="frame", disable=not progress, desc="evaluate"):
        frames += 1
        src_faces, out_faces = backend.detect(src), backend.detect(out)
        if src_faces:
            region = _face_region(src_faces[0].landmarks, src.shape)
            background.add(src[~region], out[~region])
            hull = hull_mask(src_faces[0].landmarks, src.shape) > 0
            detail["source"] += laplacian_variance(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY), hull)
            detail["converted"] += laplacian_variance(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), hull)
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
        sharpness=detail["converted"] / detail["source"] if detail["source"] > 0 else float("nan"),
        same_person_distance=SAME_PERSON_DISTANCE,
        margin=margin,
    )
