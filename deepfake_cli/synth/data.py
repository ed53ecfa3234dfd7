"""The real faces a face GAN learns from: dfk extract folders or plain folders of face images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from deepfake_cli.errors import InputError
from deepfake_cli.media.alignments import is_sort_output
from deepfake_cli.media.images import is_image, read_image

log = logging.getLogger(__name__)

MIN_FACES = 8


def face_files(folder: str | Path) -> list[Path]:
    """The face images directly in ``folder`` (not in subfolders, not dfk sort's contact sheets)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError("face folder not found", str(path))
    files = sorted(p for p in path.iterdir() if p.is_file() and is_image(p) and not is_sort_output(p))
    if not files:
        raise InputError("no face images in this folder", str(path))
    return files


def square(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of ``image`` resized to ``size`` px (area-averaged when shrinking)."""
    height, width = image.shape[:2]
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    box = image[y0:y0 + side, x0:x0 + side]
    return cv2.resize(box, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def load_faces(folders: Sequence[str | Path], size: int) -> torch.Tensor:
    """Every face of ``folders`` as one ``N x 3 x size x size`` uint8 tensor (on the CPU).

    Raises ``InputError`` for a missing or empty folder, an unreadable image or fewer than
    ``MIN_FACES`` faces in all.
    """
    files = [file for folder in folders for file in face_files(folder)]
    if len(files) < MIN_FACES:
        raise InputError(f"found {len(files)} face images; train-facegan needs at least {MIN_FACES}",
                         ", ".join(str(f) for f in folders))
    faces = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    for i, file in enumerate(files):
        faces[i] = torch.from_numpy(np.ascontiguousarray(square(read_image(file), size).transpose(2, 0, 1)))
    log.info("%d faces from %d folder(s) at %d px", len(files), len(folders), size)
    return faces
