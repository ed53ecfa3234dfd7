"""Face backends (detection + iBUG-68 landmarks), alignment, masks, colour and blending.

Use ``create_backend(name)`` to get a backend: ``offline`` (default, no downloads) or ``fan``
(face-alignment's FAN landmarks on the offline detector's boxes).
"""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.errors import ConfigError
from deepfake_cli.faces.base import DetectedFace, FaceBackend

BACKENDS = ("offline", "fan")

__all__ = ["BACKENDS", "DetectedFace", "FaceBackend", "create_backend"]


def create_backend(
    name: str = "offline",
    *,
    device: str = "cpu",
    fan_weights: str | Path | None = None,
    flip_input: bool = False,
    score_threshold: float = 0.8,
    detector_threads: int | None = None,
) -> FaceBackend:
    """Build the face backend ``name`` (``offline`` or ``fan``).

    ``detector_threads`` pins the offline detector's thread count (and stops its idle spinning);
    None keeps onnxruntime's default.
    """
    if name == "offline":
        from deepfake_cli.faces.offline import OfflineBackend

        return OfflineBackend(score_threshold=score_threshold, threads=detector_threads, device=device)
    if name == "fan":
        from deepfake_cli.faces.fan import FanBackend

        return FanBackend(device=device, weights_dir=fan_weights, flip_input=flip_input,
                          score_threshold=score_threshold)
    raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(BACKENDS)}", "--detector")
