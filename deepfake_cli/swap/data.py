"""Training faces: an extract folder preloaded once as uint8 tensors on the training device (or,
with ``train.stream``, in host memory, each step's batch gathered there and copied over).

Each face is centre-cropped (``crop``), area-resized to the model size and kept with a per-pixel
loss weight map built from its landmarks in ``alignments.json`` (eyes and mouth weighted up). A
folder without alignments still trains, without region weights.

Compact store: the weight map takes at most four values (face 1, background, mouth, eye), so it
is kept as a uint8 code per pixel -- bits 0-1 the region (an index into ``FaceSet.palette``, the
float32 weights), bit 2 the landmark hull -- and decoded per batch on the device: the same
weights and hulls bit for bit as float32 maps, at 1 byte per pixel beside the 3 of the image
(a float32 weight map and a uint8 hull took 5).
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


REGION_FACE, REGION_BACKGROUND, REGION_MOUTH, REGION_EYE = 0, 1, 2, 3
HULL_BIT = 4


@dataclass
class FaceSet:
    """One identity's faces: ``images`` uint8 ``[N,3,S,S]``; from alignments also loss ``weights``
    float ``[N,1,S,S]`` and ``hulls``, the landmark hull of each face, uint8 ``[N,1,S,S]`` (0/1).

    Compact (``palette`` set, as ``load_faces`` makes them): ``weights`` are uint8 codes (region
    index in bits 0-1, hull in bit 2; ``hulls`` is None) that ``sample`` decodes on the device.
    ``device``: where batches go (default: where ``images`` are); images kept elsewhere (on the
    host, ``train.stream``) are gathered there per batch and copied, with the same random indices.
    """

    folder: Path
    images: torch.Tensor
    weights: torch.Tensor | None
    files: list[str]
    alignments: Alignments | None
    hulls: torch.Tensor | None = None
    palette: torch.Tensor | None = None
    device: torch.device | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def has_hulls(self) -> bool:
        """Whether the faces have landmark hulls (from alignments)."""
        return self.hulls is not None or (self.palette is not None and self.weights is not None)

    @property
    def target_device(self) -> torch.device:
        return self.device if self.device is not None else self.images.device

    def bytes_per_face(self) -> int:
        """Bytes one face takes in this store (images, weights/codes and hulls)."""
        return sum(t[0].numel() * t.element_size() for t in (self.images, self.weights, self.hulls) if t is not None)

    def sample(self, count: int, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``count`` random faces (with replacement), their weight maps (float) and hulls (uint8)."""
        index = torch.randint(len(self), (count,), generator=generator, device=self.target_device)
        return self.gather(index)

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Faces ``index`` (on the target device), their weight maps (float) and hulls (uint8) there."""
        device = self.target_device
        if self.images.device != device:  # streamed: gather on the host, copy the batch over
            host = index.to(self.images.device)
            pin = self.images.is_pinned()
            parts = [None if t is None else t[host] for t in (self.images, self.weights, self.hulls)]
            images, weights, hulls = (None if t is None else (t.pin_memory() if pin else t).to(device, non_blocking=pin)
                                      for t in parts)
        else:
            images, weights, hulls = (None if t is None else t[index] for t in (self.images, self.weights, self.hulls))
        if self.palette is not None and weights is not None:
            codes = weights
            weights = self.palette.to(device)[(codes & 3).long()]
            hulls = (codes >> 2) & 1
        return images, weights, hulls


def model_coverage(alignments: Alignments | None, crop: float) -> float:
    """Alignment coverage of the model's input: the extract's coverage widened by the centre crop."""
    return (alignments.coverage if alignments is not None else DEFAULT_COVERAGE) / crop


def weight_palette(eye: float, mouth: float, background: float = 1.0) -> np.ndarray:
    """The float32 weight of each region code (face, background, mouth, eye)."""
    return np.array([1.0, background, mouth, eye], dtype=np.float32)


def region_codes(landmarks: np.ndarray, size: int, background: bool = False) -> np.ndarray:
    """Uint8 ``size x size`` map of region codes: ``REGION_FACE``, ``REGION_BACKGROUND`` outside the
    face (its 68-point hull grown by ``FACE_GROW`` x the eye distance; only with ``background``),
    ``REGION_MOUTH`` and ``REGION_EYE`` (the eyes drawn over the mouth)."""
    regions, grow = (REGIONS_68, GROW_68) if len(landmarks) == 68 else (REGIONS_5, GROW_5)
    iod = inter_ocular_distance(landmarks)
    pixels = -grow * iod
    codes = np.full((size, size), REGION_FACE, dtype=np.uint8)
    if background and len(landmarks) == 68:
        face = erode_mask(hull_mask(landmarks, codes.shape), -FACE_GROW * iod) > 0
        codes[~face] = REGION_BACKGROUND
    for name, value in (("mouth", REGION_MOUTH), ("eye", REGION_EYE)):
        for part in regions[name]:
            area = erode_mask(hull_mask(landmarks[part], codes.shape), pixels) > 0
            codes[area] = value
    return codes


def region_weights(landmarks: np.ndarray, size: int, eye: float, mouth: float,
                   background: float = 1.0) -> np.ndarray:
    """Float32 ``size x size`` map: 1 on the face, ``eye`` on the eyes, ``mouth`` on the mouth and
    ``background`` outside the face (its 68-point hull grown by ``FACE_GROW`` x the eye distance).

    ``landmarks`` (68 or 5 points) are in the map's pixel coordinates; with 5 points there is no
    hull and the background weight does not apply.
    """
    return weight_palette(eye, mouth, background)[region_codes(landmarks, size, background != 1.0)]


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
               device: torch.device | str = "cpu", background: float = 1.0, stream: bool = False) -> FaceSet:
    """Load an extract folder as a compact ``FaceSet`` at ``size`` px on ``device``; with ``stream``
    the faces stay in host memory (pinned when ``device`` is a GPU) and each batch is gathered there.

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
    target = torch.device(device)
    store = torch.device("cpu") if stream else target
    pin = stream and target.type == "cuda"
    count = len(files)
    # filled in place, one face at a time: no list of per-face arrays, no second full copy
    stacked = torch.empty((count, 3, size, size), dtype=torch.uint8, pin_memory=pin)
    codes = torch.empty((count, 1, size, size), dtype=torch.uint8, pin_memory=pin) if alignments else None
    for i, path in enumerate(files):
        image, to_model, file_width = _prepare(path, size, crop)
        stacked[i] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if codes is None:
            continue
        record = records.get(path.name)
        if record is None:  # weight 1, hull everywhere
            codes[i] = REGION_FACE | HULL_BIT
            continue
        points = _landmarks_in_model(record, to_model, file_width)
        code = region_codes(points, size, background != 1.0) | (hull_mask(points, (size, size)) > 0).astype(np.uint8) * HULL_BIT
        codes[i, 0] = torch.from_numpy(code)
    palette = torch.from_numpy(weight_palette(eye, mouth, background)).to(target)
    names = [p.name for p in files]
    return FaceSet(folder, stacked.to(store), None if codes is None else codes.to(store), names, alignments,
                   None, palette if codes is not None else None, target)
