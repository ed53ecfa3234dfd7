"""Streaming video I/O: frames are decoded one at a time and encoded through an ffmpeg pipe.

Decoding uses OpenCV, which also reports each frame's presentation time; encoding uses the ffmpeg
binary shipped in the ``imageio-ffmpeg`` wheel (or the system's), which also copies the audio track
of a source file and writes metadata tags. Frames go to ffmpeg as uncompressed RGB inside a minimal
Matroska stream that carries each frame's timestamp, so a variable-frame-rate source keeps its
timing (and its copied audio stays in sync). The container decides the default encoder (H.264, or
VP9 for WebM) and how the audio goes in. Output is written to a temporary file and renamed on
success, never left half-written.
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
from deepfake_cli.errors import ConfigError, InputError

# x264/x265 speed presets, fastest first: faster ones spend less CPU and write larger files at one CRF
ENCODER_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# audio codecs an MP4/MOV container takes as they are; other audio is re-encoded to AAC
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
# WebM takes only VP8/VP9/AV1 video and Vorbis/Opus audio; H.264 or AAC there writes nothing
WEBM_VIDEO_ENCODERS = ("libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1", "librav1e")
WEBM_AUDIO_CODECS = frozenset({"opus", "vorbis"})
# MPEG program streams take MPEG audio and AC-3, not AAC
MPEG_PS_AUDIO_CODECS = frozenset({"mp2", "mp3", "ac3"})


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
        for _, frame in self.timed():
            yield frame

    def timed(self) -> Iterator[tuple[float, np.ndarray]]:
        """``(seconds, frame)`` pairs: each frame's presentation time from the start of the video
        stream, as the container stores it (variable frame rates included). Where the decoder gives
        no time, or one that does not increase, the frame is placed 1/fps after the previous one."""
        capture = cv2.VideoCapture(str(self.path))
        step = 1.0 / self.info.fps
        previous: float | None = None
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                seconds = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
                if previous is not None and not seconds > previous + 1e-6:
                    seconds = previous + step
                previous = seconds
                yield seconds, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if previous is None:
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
    """Whether audio in ``codec`` goes into a ``suffix`` container as it is (else it is re-encoded,
    see ``audio_encoder``)."""
    if codec is None:
        return False
    suffix = suffix.lower()
    if suffix == ".mkv":
        return True
    if suffix == ".webm":
        return codec in WEBM_AUDIO_CODECS
    if suffix in {".mpg", ".mpeg"}:
        return codec in MPEG_PS_AUDIO_CODECS
    return suffix in {".mp4", ".m4v", ".mov"} and codec in MP4_AUDIO_CODECS


def audio_encoder(suffix: str) -> str:
    """The encoder for audio a ``suffix`` container cannot take as it is: Opus for WebM, MPEG-1
    Layer II for MPEG program streams, else AAC."""
    suffix = suffix.lower()
    return "libopus" if suffix == ".webm" else "mp2" if suffix in {".mpg", ".mpeg"} else "aac"


def video_encoder(suffix: str, codec: str | None = None) -> str:
    """The ffmpeg video encoder for a ``suffix`` file: ``codec`` when given, else libvpx-vp9 for
    WebM and libx264 for the rest. A ``codec`` WebM cannot hold is a ``ConfigError``."""
    webm = suffix.lower() == ".webm"
    if codec is None:
        return "libvpx-vp9" if webm else "libx264"
    if webm and codec not in WEBM_VIDEO_ENCODERS:
        raise ConfigError(f"--codec {codec} does not go into a .webm file (WebM takes "
                          f"{', '.join(WEBM_VIDEO_ENCODERS)}); leave --codec out or write .mp4/.mkv")
    return codec


def _vint(value: int) -> bytes:
    """An EBML variable-size integer (element data sizes)."""
    for length in range(1, 9):
        if value < (1 << (7 * length)) - 1:
            return (value | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML size too large: {value}")


def _element(ident: bytes, payload: bytes) -> bytes:
    return ident + _vint(len(payload)) + payload


def _uint(ident: bytes, value: int) -> bytes:
    return _element(ident, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


MKV_TIMESTAMP_SCALE_NS = 1000  # timestamps in microseconds


def _matroska_header(width: int, height: int, fps: float) -> bytes:
    """A Matroska stream header for one uncompressed RGB24 video track (segment of unknown size, so
    clusters can follow as frames arrive). Frames without a duration of their own last 1/fps."""
    ebml = _element(b"\x1a\x45\xdf\xa3", _uint(b"\x42\x86", 1) + _uint(b"\x42\xf7", 1) + _uint(b"\x42\xf2", 4)
                    + _uint(b"\x42\xf3", 8) + _element(b"\x42\x82", b"matroska") + _uint(b"\x42\x87", 4)
                    + _uint(b"\x42\x85", 2))
    info = _element(b"\x15\x49\xa9\x66", _uint(b"\x2a\xd7\xb1", MKV_TIMESTAMP_SCALE_NS)
                    + _element(b"\x4d\x80", b"dfk") + _element(b"\x57\x41", b"dfk"))
    video = _element(b"\xe0", _uint(b"\xb0", width) + _uint(b"\xba", height) + _element(b"\x2e\xb5\x24", b"RGB\x18"))
    track = _element(b"\xae", _uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1)
                     + _element(b"\x86", b"V_UNCOMPRESSED") + _uint(b"\x23\xe3\x83", round(1e9 / fps)) + video)
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # size unknown
    return ebml + segment + info + _element(b"\x16\x54\xae\x6b", track)


def _matroska_frame_header(timestamp_us: int, size: int) -> bytes:
    """The bytes before ``size`` bytes of pixels: one cluster holding one keyframe of track 1 at
    ``timestamp_us`` (the pixels are written after it, not copied into it)."""
    block_head = b"\x81\x00\x00\x80"  # track 1, relative time 0, keyframe
    block = b"\xa3" + _vint(len(block_head) + size) + block_head
    timestamp = _uint(b"\xe7", timestamp_us)
    return b"\x1f\x43\xb6\x75" + _vint(len(timestamp) + len(block) + size) + timestamp + block


class VideoWriter:
    """Encode RGB frames to a video through ffmpeg, optionally muxing audio from ``audio_from``.

    Use as a context manager: the file appears at ``path`` only when the block succeeds.

    * ``codec``: the ffmpeg encoder; None picks one that fits the container (``video_encoder``:
      libvpx-vp9 for ``.webm``, libx264 otherwise).
    * ``crf`` and ``preset`` (one of ``ENCODER_PRESETS``) apply to libx264, libx265 and libvpx-vp9
      (where the preset picks ``-cpu-used``).
    * Size: the output has exactly ``width`` x ``height`` pixels. H.264/H.265 4:2:0 needs even sizes,
      so an odd width or height is encoded 4:4:4 (``yuv444p``, High 4:4:4 profile) instead of being
      cropped or padded.
    * Timing: ``write(frame, seconds)`` places each frame at its own time (a variable frame rate
      stays variable); without times frame i is at i/fps. The last frame lasts 1/fps.
    * Audio is copied as it is where the container takes its codec (``copies_audio``), else
      re-encoded (``audio_encoder``: AAC, or Opus for WebM).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        audio_from: str | Path | None = None,
        codec: str | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        suffix = self.path.suffix.lower() or ".mp4"
        self.codec = video_encoder(suffix, codec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        executable = ffmpeg_exe()
        command = [
            executable, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "matroska", "-i", "-",
        ]
        if audio_from is not None:
            audio = "copy" if copies_audio(audio_codec(audio_from), suffix) else audio_encoder(suffix)
            command += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a?", "-c:a", audio]
        # frames keep the times they come with: no frame is dropped or duplicated to a constant rate
        command += ["-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-c:v", self.codec]
        odd = self.width % 2 or self.height % 2
        if self.codec in ("libx264", "libx265"):
            command += ["-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv444p" if odd else "yuv420p"]
        elif self.codec == "libvpx-vp9":  # VP9 4:2:0 takes odd sizes
            cpu_used = max(0, min(5, 8 - ENCODER_PRESETS.index(preset))) if preset in ENCODER_PRESETS else 5
            command += ["-crf", str(crf), "-b:v", "0", "-deadline", "good", "-cpu-used", str(cpu_used),
                        "-row-mt", "1", "-pix_fmt", "yuv420p"]
        elif self.codec == "mjpeg":
            command += ["-q:v", "2"]
        for key, value in (metadata or {}).items():
            command += ["-metadata", f"{key}={value}"]
        self._tmp = new_temp_file(self.path, suffix=suffix)
        command += [str(self._tmp)]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise InputError(f"cannot start ffmpeg: {exc.strerror or exc}", executable) from None
        self.frames_written = 0
        self._last_us: int | None = None
        try:
            self._send(_matroska_header(self.width, self.height, self.fps))
        except InputError:
            self._tmp.unlink(missing_ok=True)
            raise

    def _send(self, data: bytes | memoryview) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(data)
        except BrokenPipeError:
            raise InputError(f"ffmpeg stopped: {self._stderr()}", str(self.path)) from None

    def write(self, frame_rgb: np.ndarray, seconds: float | None = None) -> None:
        """Append one RGB uint8 frame of the writer's size, shown at ``seconds`` (default: i/fps).

        Times must increase; one that does not (or comes within a microsecond) is placed 1/fps after
        the previous frame.
        """
        if frame_rgb.shape != (self.height, self.width, 3):
            raise InputError(f"frame of shape {frame_rgb.shape} does not match {self.height}x{self.width}x3")
        if seconds is None:
            seconds = self.frames_written / self.fps
        stamp = round(seconds * 1e6)
        if self._last_us is not None and stamp <= self._last_us:
            stamp = self._last_us + max(1, round(1e6 / self.fps))
        stamp = max(stamp, 0)
        pixels = memoryview(np.ascontiguousarray(frame_rgb, dtype=np.uint8)).cast("B")
        self._send(_matroska_frame_header(stamp, len(pixels)))
        self._send(pixels)
        self._last_us = stamp
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
