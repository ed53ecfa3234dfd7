"""Full-quality landmarks: face-alignment's 2D FAN on the offline detector's boxes.

FAN's weights are downloaded by face-alignment into ``<torch hub dir>/checkpoints/`` on first use.
Offline, put the file there yourself, or pass ``--fan-weights DIR`` to use ``DIR`` as the hub
dir (the file must then be ``DIR/checkpoints/<name>``). A missing file is a clear error naming it.
"""

from __future__ import annotations

import os
import urllib.error
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from deepfake_cli.errors import BackendError
from deepfake_cli.faces.base import DetectedFace, FaceBackend
from deepfake_cli.faces.offline import OfflineBackend


def fan_weights_file(hub_dir: str | Path | None = None) -> Path:
    """Where face-alignment looks for the 2D FAN weights (under ``hub_dir`` or torch's hub dir)."""
    from face_alignment.api import models_urls

    name = os.path.basename(models_urls["2DFAN-4"])
    return Path(hub_dir or torch.hub.get_dir()) / "checkpoints" / name


@contextmanager
def _hub_dir(path: str | Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(path))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


class FanBackend(FaceBackend):
    """RetinaFace boxes (offline) + face-alignment 2D FAN 68-point landmarks."""

    name = "fan"

    def __init__(self, device: str = "cpu", weights_dir: str | Path | None = None, flip_input: bool = False,
                 score_threshold: float = 0.8) -> None:
        try:
            import face_alignment
        except ImportError:
            raise BackendError("the fan backend needs face-alignment: pip install face-alignment") from None
        self._detector = OfflineBackend(score_threshold=score_threshold)
        weights = fan_weights_file(weights_dir)
        if weights_dir is not None and not weights.is_file():
            raise BackendError(f"FAN weights not found: put {weights.name} at this path", str(weights))
        try:
            with _hub_dir(weights_dir):
                self._fan: Any = face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D, device=device, flip_input=flip_input,
                    face_detector="folder", compile=False,
                )
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(
                f"FAN weights {weights.name} are not available offline and could not be downloaded "
                f"({exc.__class__.__name__}); download them on a machine with internet and pass "
                "--fan-weights DIR (file at DIR/checkpoints/" + weights.name + ")", str(weights)
            ) from None
        except RuntimeError as exc:
            raise BackendError(f"FAN weights do not match the 2D FAN architecture: {str(exc).splitlines()[0]}",
                               str(weights)) from None

    def detect_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        return self._detector.detect_boxes(image)

    def landmarks(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        boxes = [np.append(face.bbox, face.score) for face in faces]
        found = self._fan.get_landmarks_from_image(image, detected_faces=boxes) or []
        return [DetectedFace(bbox=face.bbox, score=face.score, landmarks=np.asarray(points[:, :2], dtype=np.float64))
                for face, points in zip(faces, found)]
