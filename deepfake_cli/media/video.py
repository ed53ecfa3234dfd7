"""Streaming video I/O: frames are decoded one at a time and encoded through an ffmpeg pipe.

Decoding uses OpenCV; encoding uses the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel (or
the system's), which also copies the audio track of a source file and writes metadata tags.
Output is written to a temporary file and renamed on success, never left half-written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Iterator

import cv2
import numpy as np

from deepfake_cli.checkpoint import fsync_dir, fsync_file, new_temp_file
from deepfake_cli.errors import InputError

# x264/x265 speed presets, fastest first: faster ones spend less CPU and write larger files at one CRF
ENCODER_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# audio codecs an MP4/MOV container takes as they are; other audio is re-encoded to AAC
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


def is_video(path: Path) -> bool:
    """Whether ``path`` has a video suffix."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: the one bundled with imageio-ffmpeg, else the system's."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        system = shutil.which("ffmpeg")
        if system:
            return system
    raise InputError("no ffmpeg found: install imageio-ffmpeg (pip) or a system ffmpeg")


@dataclass(frozen=True)
class VideoInfo:
    """Basic properties of a video stream."""

    width: int
    height: int
    fps: float
    frame_count: int


class VideoReader:
    """Iterate over a video's frames as RGB uint8 arrays, one at a time (bounded memory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("video not found", str(self.path))
        capture = cv2.VideoCapture(str(self.path))
        ok = capture.isOpened()
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) if ok else 0
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) if ok else 0
        if not ok or width <= 0 or height <= 0:
            capture.release()
            raise InputError("cannot open video (corrupt or unsupported format)", str(self.path))
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        capture.release()
        self.info = VideoInfo(width=width, height=height, fps=fps, frame_count=count)

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            decoded = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                decoded += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if decoded == 0:
                raise InputError("video has no decodable frames (corrupt?)", str(self.path))
        finally:
            capture.release()


def audio_codec(path: str | Path) -> str | None:
    """Codec of the first audio stream of the media file at ``path`` (``aac``, ...), or None (asks ffmpeg)."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    )
    for line in result.stderr.splitlines():
        if "Stream #" in line and "Audio:" in line:
            return line.split("Audio:", 1)[1].split()[0].rstrip(",")
    return None


def has_audio(path: str | Path) -> bool:
    """Whether the media file at ``path`` contains an audio stream."""
    return audio_codec(path) is not None


def copies_audio(codec: str | None, suffix: str) -> bool:
    """Whether audio in ``codec`` goes into a ``suffix`` container as it is (else it is re-encoded)."""
    if codec is None:
        return False
    if suffix.lower() == ".mkv":
        return True
    return suffix.lower() in {".mp4", ".m4v", ".mov"} and codec in MP4_AUDIO_CODECS


class VideoWriter:
    """Encode RGB frames to a video through ffmpeg, optionally muxing audio from ``audio_from``.

    Use as a context manager: the file appears at ``path`` only when the block succeeds. ``crf`` and
    ``preset`` (one of ``ENCODER_PRESETS``) apply to libx264 and libx265. The audio is copied as
    it is where the container takes its codec (``copies_audio``), else re-encoded to AAC.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        audio_from: str | Path | None = None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "veryfast",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        executable = ffmpeg_exe()
        self._tmp = new_temp_file(self.path, suffix=self.path.suffix or ".mp4")
        command = [
            executable, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
            "-r", f"{fps:.6f}", "-i", "-",
        ]
        if audio_from is not None:
            audio = "copy" if copies_audio(audio_codec(audio_from), self.path.suffix) else "aac"
            command += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a?", "-c:a", audio]
        command += ["-c:v", codec]
        if codec in ("libx264", "libx265"):
            command += ["-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv420p"]
        elif codec == "mjpeg":
            command += ["-q:v", "2"]
        for key, value in (metadata or {}).items():
            command += ["-metadata", f"{key}={value}"]
        command += [str(self._tmp)]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise InputError(f"cannot start ffmpeg: {exc.strerror or exc}", executable) from None
        self.frames_written = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size."""
        if frame_rgb.shape != (self.height, self.width, 3):
            raise InputError(f"frame of shape {frame_rgb.shape} does not match {self.height}x{self.width}x3")
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(np.ascontiguousarray(frame_rgb, dtype=np.uint8).tobytes())
        except BrokenPipeError:
            raise InputError(f"ffmpeg stopped: {self._stderr()}", str(self.path)) from None
        self.frames_written += 1

    def _stderr(self) -> str:
        assert self._process.stderr is not None
        self._process.wait()
        lines = self._process.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "encoder failed"

    def close(self, success: bool = True) -> None:
        """Finish encoding; on success move the file into place, else delete it."""
        assert self._process.stdin is not None and self._process.stderr is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        if not success:
            self._process.kill()
        self._process.wait()
        error = self._process.stderr.read().decode(errors="replace").strip()
        if success and self._process.returncode == 0 and self.frames_written > 0:
            fsync_file(self._tmp)
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
            return
        self._tmp.unlink(missing_ok=True)
        if success:
            detail = error.splitlines()[-1] if error else "no frames written"
            raise InputError(f"video encoding failed: {detail}", str(self.path))

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(success=exc_type is None)
