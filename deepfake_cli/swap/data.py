"""Training faces: an extract folder preloaded once as uint8 tensors on the training device.

Each face is centre-cropped (``crop``), area-resized to the model size and kept with a per-pixel
loss weight map built from its landmarks in ``alignments.json`` (eyes and mouth weighted up). A
folder without alignments still trains, without region weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from deepfake_cli.errors import InputError
from deepfake_cli.faces.masks import erode_mask, hull_mask
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.media.alignments import (ALIGNMENTS_FILE, Alignments, FaceRecord, is_sort_output, load_alignments,
                                          split_missing)
from deepfake_cli.media.images import is_image, read_image

log = logging.getLogger(__name__)

MIN_FACES = 8
DEFAULT_COVERAGE = Alignments().coverage
# Landmark groups (iBUG 68 / 5-point) of the weighted regions and their growth in inter-ocular units.
REGIONS_68 = {"eye": (slice(36, 42), slice(42, 48)), "mouth": (slice(48, 60),)}
REGIONS_5 = {"eye": (slice(0, 1), slice(1, 2)), "mouth": (slice(3, 5),)}
GROW_68, GROW_5 = 0.12, 0.25
FACE_GROW = 0.3  # the face region of the background weight: the 68-point hull grown by this x IOD


@dataclass
class FaceSet:
    """One identity's faces: ``images`` uint8 ``[N,3,S,S]``; from alignments also loss ``weights``
    float ``[N,1,S,S]`` and ``hulls``, the landmark hull of each face, uint8 ``[N,1,S,S]`` (0/1)."""

    folder: Path
    images: torch.Tensor
    weights: torch.Tensor | None
    files: list[str]
    alignments: Alignments | None
    hulls: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, count: int, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``count`` random faces (with replacement), their weight maps and hulls."""
        index = torch.randint(len(self), (count,), generator=generator, device=self.images.device)
        return tuple(None if t is None else t[index] for t in (self.images, self.weights, self.hulls))


def model_coverage(alignments: Alignments | None, crop: float) -> float:
    """Alignment coverage of the model's input: the extract's coverage widened by the centre crop."""
    return (alignments.coverage if alignments is not None else DEFAULT_COVERAGE) / crop


def region_weights(landmarks: np.ndarray, size: int, eye: float, mouth: float,
                   background: float = 1.0) -> np.ndarray:
    """Float32 ``size x size`` map: 1 on the face, ``eye`` on the eyes, ``mouth`` on the mouth and
    ``background`` outside the face (its 68-point hull grown by ``FACE_GROW`` x the eye distance).

    ``landmarks`` (68 or 5 points) are in the map's pixel coordinates; with 5 points there is no
    hull and the background weight does not apply.
    """
    regions, grow = (REGIONS_68, GROW_68) if len(landmarks) == 68 else (REGIONS_5, GROW_5)
    iod = inter_ocular_distance(landmarks)
    pixels = -grow * iod
    weights = np.ones((size, size), dtype=np.float32)
    if background != 1.0 and len(landmarks) == 68:
        face = erode_mask(hull_mask(landmarks, weights.shape), -FACE_GROW * iod) > 0
        weights[~face] = background
    for name, value in (("mouth", mouth), ("eye", eye)):
        for part in regions[name]:
            area = erode_mask(hull_mask(landmarks[part], weights.shape), pixels) > 0
            weights[area] = value
    return weights


def _face_files(folder: Path) -> list[Path]:
    """The face images directly in ``folder`` (not in subfolders such as dfk sort's ``rejected/``,
    and not sort's contact sheets)."""
    if not folder.is_dir():
        raise InputError("face folder not found", str(folder))
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p) and not is_sort_output(p))


def _prepare(path: Path, size: int, crop: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The centre ``crop`` of a face resized to ``size``, the 2x3 map of file to model pixels, and
    the file's width."""
    image = read_image(path)
    height, width = image.shape[:2]
    side = max(int(round(min(height, width) * crop)), 1)
    x0, y0 = (width - side) // 2, (height - side) // 2
    box = image[y0:y0 + side, x0:x0 + side]
    resized = cv2.resize(box, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    scale = size / side
    return resized, np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]]), width


def _landmarks_in_model(record: FaceRecord, to_model: np.ndarray, file_width: int) -> np.ndarray:
    points = record.aligned_landmarks() * (file_width / record.size)
    return points @ to_model[:, :2].T + to_model[:, 2]


def load_faces(folder: str | Path, size: int, crop: float = 1.0, eye: float = 3.0, mouth: float = 2.0,
               device: torch.device | str = "cpu", background: float = 1.0) -> FaceSet:
    """Load an extract folder as a ``FaceSet`` at ``size`` px on ``device``.

    Raises ``InputError`` for a missing folder or fewer than ``MIN_FACES`` faces.
    """
    folder = Path(folder)
    files = _face_files(folder)
    if len(files) < MIN_FACES:
        raise InputError(f"found {len(files)} face images; train-swap needs at least {MIN_FACES} "
                         "(run dfk extract on more frames)", str(folder))
    alignments = load_alignments(folder) if (folder / ALIGNMENTS_FILE).is_file() else None
    records: dict[str, FaceRecord] = {r.file: r for r in alignments.faces} if alignments else {}
    if alignments is None:
        log.warning("%s has no %s: training without eye/mouth loss weighting", folder, ALIGNMENTS_FILE)
    else:
        missing = split_missing(alignments, folder)[1]
        if missing:
            log.info("%s: skipping %d listed faces whose PNG is gone (deleted, or moved by dfk sort)", folder,
                     len(missing))
    images, weights, hulls = [], [], []
    for path in files:
        image, to_model, file_width = _prepare(path, size, crop)
        images.append(image)
        record = records.get(path.name)
        if record is None:
            weights.append(np.ones((size, size), dtype=np.float32))
            hulls.append(np.ones((size, size), dtype=np.uint8))
            continue
        points = _landmarks_in_model(record, to_model, file_width)
        weights.append(region_weights(points, size, eye, mouth, background))
        hulls.append(hull_mask(points, (size, size)).astype(np.uint8))
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)
    if alignments is None:
        return FaceSet(folder, stacked, None, [p.name for p in files], None)
    weight_maps = torch.from_numpy(np.stack(weights))[:, None].to(device)
    hull_maps = torch.from_numpy(np.stack(hulls))[:, None].to(device)
    return FaceSet(folder, stacked, weight_maps, [p.name for p in files], alignments, hull_maps)
