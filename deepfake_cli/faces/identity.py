"""Face identity descriptors: dlib's 128-D ResNet embedding (shipped in face-recognition-models).

Two faces whose descriptors are closer than ``SAME_PERSON_DISTANCE`` (0.6, dlib's documented
threshold) are taken to be the same person.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.faces.offline import dlib_model_path

SAME_PERSON_DISTANCE = 0.6


@lru_cache(maxsize=1)
def _recognizer() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))


def face_descriptor(image: np.ndarray, face: DetectedFace) -> np.ndarray:
    """The 128-D identity descriptor of ``face`` in the RGB uint8 ``image``."""
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks]
    shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2), points)
    return np.asarray(_recognizer().compute_face_descriptor(np.ascontiguousarray(image), shape), dtype=np.float64)
