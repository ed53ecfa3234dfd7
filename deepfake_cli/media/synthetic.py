"""Face clips built from public-domain stills that installed packages already carry.

Used by the test fixtures and ``dfk demo``: ``skimage.data.astronaut()`` (Eileen Collins, NASA,
public domain) and matplotlib's ``grace_hopper.jpg`` sample (public domain). A clip moves the still
with a smooth, known similarity transform per frame (shift, rotation, scale) and varies the
lighting, so tests can check landmarks against the motion that was applied.
"""

from __future__ import annotations

import math
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake_cli.errors import InputError
from deepfake_cli.media.images import read_image
from deepfake_cli.media.video import VideoWriter


@dataclass(frozen=True)
class Still:
    """A still photo and where its face is (centre x, y and approximate size in px)."""

    name: str
    center: tuple[float, float]
    face_size: float


STILLS = {
    "astronaut": Still("astronaut", (224.0, 118.0), 115.0),
    "grace_hopper": Still("grace_hopper", (265.0, 218.0), 200.0),
}


def load_still(name: str) -> np.ndarray:
    """The RGB uint8 pixels of a shipped still (``astronaut`` or ``grace_hopper``)."""
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError:
            raise InputError("the astronaut still needs scikit-image (pip install scikit-image)") from None
        return np.ascontiguousarray(data.astronaut())
    if name == "grace_hopper":
        from matplotlib import cbook

        return read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    raise InputError(f"unknown still {name!r}; choose one of {', '.join(STILLS)}")


@dataclass
class Clip:
    """Frames (RGB uint8) and, per frame, the 2x3 matrix mapping still pixels to frame pixels."""

    frames: list[np.ndarray]
    matrices: list[np.ndarray]


def make_clip(
    name: str,
    n_frames: int = 30,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    face_fraction: float = 0.42,
    motion: float = 1.0,
) -> Clip:
    """A clip of ``n_frames`` at ``size`` (width, height) with smooth head-like motion.

    ``face_fraction`` sets the face size relative to the frame height; ``motion`` scales the
    amplitude of shift, rotation, zoom and lighting changes; ``seed`` picks the phases.
    """
    return moving_still(load_still(name), STILLS[name], n_frames, size, seed, face_fraction, motion)


def moving_still(
    image: np.ndarray,
    still: Still,
    n_frames: int = 30,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    face_fraction: float = 0.42,
    motion: float = 1.0,
) -> Clip:
    """``make_clip`` for any RGB ``image`` whose face ``still`` locates (e.g. one frame of a video)."""
    width, height = size
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * math.pi, size=6)
    base_scale = face_fraction * height / still.face_size
    frames, matrices = [], []
    for t in range(n_frames):
        u = 2 * math.pi * t / max(n_frames, 1)
        angle = motion * 8.0 * math.sin(u + phases[0])
        scale = base_scale * (1.0 + motion * 0.08 * math.sin(u + phases[1]))
        cx = width / 2 + motion * 0.10 * width * math.sin(u + phases[2])
        cy = height / 2 + motion * 0.06 * height * math.sin(u + phases[3])
        matrix = cv2.getRotationMatrix2D(still.center, angle, scale)
        matrix[:, 2] += np.array([cx, cy]) - np.array(still.center)
        frame = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + motion * 0.15 * math.sin(u + phases[4])
        tint = 1.0 + motion * 0.04 * np.array([math.sin(u + phases[5]), 0.0, -math.sin(u + phases[5])])
        frames.append(np.clip(frame.astype(np.float32) * gain * tint, 0, 255).astype(np.uint8))
        matrices.append(matrix)
    return Clip(frames=frames, matrices=matrices)


def write_tone_wav(path: str | Path, seconds: float, rate: int = 16000, hz: float = 440.0) -> None:
    """Write a mono 16-bit WAV sine tone (a stand-in soundtrack)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * math.pi * hz * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def write_clip(path: str | Path, frames: list[np.ndarray], fps: float = 15.0, audio: bool = False) -> Path:
    """Encode ``frames`` as an H.264 video; with ``audio`` a sine-tone track is added."""
    target = Path(path)
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        tone = None
        if audio:
            tone = Path(tmp) / "tone.wav"
            write_tone_wav(tone, seconds=len(frames) / fps)
        with VideoWriter(target, width, height, fps, audio_from=tone, crf=12) as writer:
            for frame in frames:
                writer.write(frame)
    return target
