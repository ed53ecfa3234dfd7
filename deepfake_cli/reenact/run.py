"""The reenact stage: one photo animated by a driving video, written as a labelled video.

``reenact(photo, driving, output, options, model_dir)`` streams the driving video one frame at a
time: the driving face (the largest, followed from frame to frame) is landmarked and smoothed over
time, an ``Animator`` turns its motion relative to the first frame into a frame of the photo, and
the frames are encoded at the driving video's timing with its audio and provenance tags (optionally
a visible watermark). Without ``model_dir`` the animator is the landmark warp (``reenact.warp``);
with it, a learned model (``reenact.learned``, imported only then). A frame where no face is found
reuses the last pose. The output appears only complete (temp file, then rename).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepfake_cli.errors import ConfigError, InputError, NoFaceError
from deepfake_cli.faces import BACKENDS, create_backend
from deepfake_cli.faces.base import DetectedFace, FaceBackend
from deepfake_cli.faces.finder import FaceFinder
from deepfake_cli.faces.follow import DetectingLocator, ScaledBackend
from deepfake_cli.faces.identity import landmarks_face
from deepfake_cli.faces.smoothing import LandmarkSmoother
from deepfake_cli.media.images import is_image, read_image
from deepfake_cli.media.provenance import provenance_text, stamp_watermark, video_metadata
from deepfake_cli.media.video import ENCODER_PRESETS, VideoReader, VideoWriter, is_video
from deepfake_cli.reenact.base import Animator
from deepfake_cli.reenact.warp import WarpAnimator

log = logging.getLogger(__name__)

# Every driving frame is searched whole: the landmarker's points depend on the detector's box, and
# a box found in a following window differs from a whole-frame one by enough to move dlib's points
# 1-2 px on a still face, which the warp would show as motion.
REDETECT_EVERY = 1


@dataclass
class ReenactOptions:
    """How to reenact: ``relative`` motion (else the driving face's aligned shape, warp only),
    landmark ``smooth``ing (0 off), encoder settings and the visible ``watermark``."""

    relative: bool = True
    smooth: float = 1.0
    redetect: int = REDETECT_EVERY
    detector: str = "offline"
    device: str = "auto"
    crf: int = 18
    preset: str = "veryfast"
    codec: str | None = None
    watermark: bool = False

    def check(self) -> None:
        """Reject out-of-range values with a clear message."""
        for name, value, allowed in (("--detector", self.detector, BACKENDS),
                                     ("--preset", self.preset, ENCODER_PRESETS)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.smooth < 0:
            raise ConfigError(f"--smooth must be >= 0 (0 turns smoothing off); got {self.smooth}")
        if self.redetect < 1:
            raise ConfigError(f"--redetect must be at least 1; got {self.redetect}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be within 0..51; got {self.crf}")


@dataclass
class ReenactSummary:
    """What one reenact run did."""

    output: Path
    frames: int = 0
    faceless: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """A one-line summary for the terminal."""
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        text = f"reenact: {self.frames} frames in {self.seconds:.1f}s ({fps:.1f} fps) -> {self.output}"
        return text + (f"; {self.faceless} frames without a face reused the last pose" if self.faceless else "")


def _check_paths(photo: Path, driving: Path, output: Path) -> None:
    if not photo.is_file():
        raise InputError("photo not found", str(photo))
    if not is_image(photo):
        raise InputError("the photo must be an image file (.jpg, .png, ...)", str(photo))
    if not driving.is_file():
        raise InputError("driving video not found", str(driving))
    if not is_video(driving):
        raise InputError("the driving video must be a video file (.mp4, .mov, ...)", str(driving))
    if not is_video(output):
        raise InputError("the output must be a video file (.mp4, .mkv, ...)", str(output))
    if output.resolve() in (photo.resolve(), driving.resolve()):
        raise InputError("the output would overwrite an input; choose another output", str(output))


def photo_face(photo: np.ndarray, backend: FaceBackend, where: str) -> DetectedFace:
    """The largest face of ``photo`` with its 68 landmarks; ``NoFaceError`` when there is none."""
    faces = FaceFinder(ScaledBackend(backend)).find(photo)
    if not faces or not faces[0].has_68:
        raise NoFaceError("no face found in the photo", where)
    return faces[0]


def load_animator(model_dir: str | Path | None, options: ReenactOptions) -> Animator:
    """The warp baseline, or the learned model in ``model_dir``."""
    if model_dir is None:
        return WarpAnimator(relative=options.relative)
    if not options.relative:
        raise ConfigError("--absolute works with the warp baseline only; a learned model moves relatively")
    from deepfake_cli.reenact.learned import load_animator as load_learned
    from deepfake_cli.runtime import resolve_device

    return load_learned(Path(model_dir), resolve_device(options.device))


def reenact(photo: str | Path, driving: str | Path, output: str | Path, options: ReenactOptions | None = None,
            model_dir: str | Path | None = None, *, progress: bool = True, animator: Animator | None = None,
            backend: FaceBackend | None = None) -> ReenactSummary:
    """Animate the face of ``photo`` with the motion of ``driving``'s face into the video ``output``.

    ``animator`` (else the warp or ``model_dir``'s model) and ``backend`` (else ``options.detector``)
    may be given to reuse them across calls.
    """
    options = options or ReenactOptions()
    options.check()
    photo, driving, output = Path(photo), Path(driving), Path(output)
    _check_paths(photo, driving, output)
    start = time.perf_counter()
    backend = backend or create_backend(options.detector, device="cpu", detector_threads=1)
    image = read_image(photo)
    face = photo_face(image, backend, str(photo))
    animator = animator or load_animator(model_dir, options)
    reader = VideoReader(driving)
    frames = reader.timed()
    locator = DetectingLocator(backend, options.redetect)
    smoother = LandmarkSmoother(reader.info.fps, options.smooth)
    seconds, first = next(frames)
    found = [points for points in locator(driving, 0, first) if len(points) == 68]
    if not found:
        raise NoFaceError("no face found in the driving video's first frame", str(driving))
    points = smoother(found[0])
    animator.start(image, face, first, landmarks_face(points))
    method = f"model '{Path(model_dir).name}'" if model_dir is not None else "the landmark-warp baseline"
    metadata = video_metadata(provenance_text("a photo reenacted", method))
    summary = ReenactSummary(output)
    height, width = image.shape[:2]
    with VideoWriter(output, width, height, reader.info.fps, audio_from=driving, codec=options.codec,
                     crf=options.crf, preset=options.preset, metadata=metadata) as writer, \
            tqdm(total=reader.info.frame_count or None, desc="reenact", unit="frame", disable=not progress) as bar:
        for index, (seconds, frame) in enumerate(itertools.chain([(seconds, first)], frames)):
            if index:
                found = [p for p in locator(driving, index, frame) if len(p) == 68]
                if found:
                    points = smoother(found[0])
                else:
                    summary.faceless += 1
            out = animator.frame(frame, landmarks_face(points))
            if options.watermark:
                stamp_watermark(out)
            writer.write(out, seconds)
            summary.frames += 1
            bar.update(1)
    summary.seconds = time.perf_counter() - start
    if summary.faceless:
        log.info("%d of %d driving frames had no face; they reused the last pose", summary.faceless, summary.frames)
    return summary
