"""The per-frame work of ``convert``: find faces, align, swap in batches, paste back.

``FrameSwapper`` exposes three pipeline stages that act in place on ``FrameJob`` lists:
``find_faces`` (landmarks from a ``FaceLocator``, smoothed over time; aligned crops),
``run_model`` (one batched model call, and with a face parser one batched parser call) and
``compose`` (un-warp face and mask, match colours, blend, optional watermark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
import torch

from deepfake_cli.faces.align import alignment_matrix, invert_matrix, transform_points, unwarp_face, warp_face
from deepfake_cli.faces.blend import blend
from deepfake_cli.faces.color import match_color
from deepfake_cli.faces.masks import MaskShape, blend_mask
from deepfake_cli.faces.smoothing import LandmarkSmoother
from deepfake_cli.faces.follow import FaceLocator
from deepfake_cli.convert.provenance import stamp_watermark

if TYPE_CHECKING:
    from deepfake_cli.faces.parsing import FaceParser

ROI_MARGIN = 2


class SwapModelLike(Protocol):
    """What convert needs from a trained swap model."""

    size: int
    coverage: float
    kind: str

    def swap(self, faces: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Swapped faces ``[N,3,S,S]`` in [0,1] and the learned mask ``[N,1,S,S]`` (or None)."""


@dataclass
class BlendSettings:
    """How a swapped face goes back into its frame."""

    mask: str = "hull"
    mask_shape: MaskShape = field(default_factory=MaskShape)
    color: str = "band"
    blend: str = "feather"
    watermark: bool = False


@dataclass
class FaceJob:
    """One face of one frame on its way through the model."""

    landmarks: np.ndarray
    matrix: np.ndarray
    crop: np.ndarray
    swapped: np.ndarray | None = None  # RGB, or RGBA with the learned mask as alpha (uint8)
    parse_matrix: np.ndarray | None = None  # frame -> the face parser's crop (occlusion mask only)
    parse_crop: np.ndarray | None = None
    face_region: np.ndarray | None = None  # uint8, 255 where the parser saw face classes


@dataclass
class FrameJob:
    """Frame ``index`` of ``source``; ``compose`` sets ``output`` (the frame itself if no face was
    swapped) and ``swapped`` (how many faces were). ``target`` is where an image result goes;
    ``seconds`` is a video frame's presentation time."""

    source: Path
    index: int
    frame: np.ndarray
    target: Path | None = None
    seconds: float | None = None
    faces: list[FaceJob] = field(default_factory=list)
    output: np.ndarray | None = None
    swapped: int = 0


def _to_tensor(crops: list[np.ndarray], device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(crops)).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


class FrameSwapper:
    """Swaps the faces of frames with ``model``; one instance per run, reset per source."""

    def __init__(self, model: SwapModelLike, direction: str, settings: BlendSettings, device: torch.device,
                 parser: FaceParser | None = None) -> None:
        self.model, self.direction, self.settings, self.device = model, direction, settings, device
        self.parser = parser  # runs only for the occlusion mask
        self.locate: FaceLocator = lambda source, index, frame: []
        self.smoothers: list[LandmarkSmoother] = []
        self.smooth_strength, self.fps, self.label_all = 0.0, 25.0, False

    def start_source(self, locate: FaceLocator, fps: float, smooth: float, label_all: bool = False) -> None:
        """Begin a new source: its face locator, frame rate and smoothing strength (0 = off).

        ``label_all`` watermarks (when asked to) frames without a face too, as a video needs.
        """
        self.locate, self.fps, self.smooth_strength, self.label_all = locate, fps, smooth, label_all
        self.smoothers = []

    def _smoothed(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        if len(faces) != len(self.smoothers):
            self.smoothers = [LandmarkSmoother(self.fps, self.smooth_strength) for _ in faces]
        return [smoother(points) for smoother, points in zip(self.smoothers, faces, strict=True)]

    def find_faces(self, jobs: list[FrameJob]) -> None:
        """Stage: landmarks (smoothed), alignment matrices and aligned crops of each frame."""
        size, coverage = self.model.size, self.model.coverage
        for job in jobs:
            for landmarks in self._smoothed(self.locate(job.source, job.index, job.frame)):
                matrix = alignment_matrix(landmarks, size, coverage)
                face = FaceJob(landmarks, matrix, warp_face(job.frame, matrix, size))
                if self.parser is not None:
                    face.parse_matrix = alignment_matrix(landmarks, self.parser.size, self.parser.coverage)
                    face.parse_crop = warp_face(job.frame, face.parse_matrix, self.parser.size)
                job.faces.append(face)

    def run_model(self, jobs: list[FrameJob]) -> None:
        """Stage: swap every face of the batch in one model call."""
        faces = [face for job in jobs for face in job.faces]
        if not faces:
            return
        with torch.inference_mode():
            rgb, mask = self.model.swap(_to_tensor([f.crop for f in faces], self.device), self.direction)
            layers = rgb if mask is None else torch.cat([rgb, mask], dim=1)
            swapped = layers.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        for face, pixels in zip(faces, swapped.numpy(), strict=True):
            face.swapped = pixels
        if self.parser is not None:
            regions = self.parser.face_regions(np.stack([f.parse_crop for f in faces]))
            for face, region in zip(faces, regions, strict=True):
                face.face_region, face.parse_crop = region, None

    def compose(self, jobs: list[FrameJob]) -> None:
        """Stage: paste each swapped face into (a copy of) its frame; frames without faces pass through."""
        label = self.settings.watermark
        for job in jobs:
            if not job.faces and not (label and self.label_all):
                job.output = job.frame
                continue
            output = job.frame.copy()
            for face in job.faces:
                paste_face(output, face, self.settings)
            if label:
                stamp_watermark(output)
            job.output, job.swapped, job.faces = output, len(job.faces), []


def _roi(matrix: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Frame box ``(x0, y0, x1, y1)`` covered by the aligned square, clipped; None if outside."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    points = transform_points(corners, invert_matrix(matrix))
    height, width = frame_shape[:2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - ROI_MARGIN
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + ROI_MARGIN
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x1 - x0 > 2 and y1 - y0 > 2 else None


def paste_face(frame: np.ndarray, face: FaceJob, settings: BlendSettings) -> None:
    """Un-warp one swapped face and its mask into ``frame`` (in place), colour-matched and blended."""
    assert face.swapped is not None
    size = face.swapped.shape[0]
    box = _roi(face.matrix, size, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    matrix = face.matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    back, valid = unwarp_face(face.swapped, matrix, (y1 - y0, x1 - x0))
    learned = back[..., 3].astype(np.float32) * np.float32(1 / 255) if back.shape[2] == 4 else None
    landmarks = face.landmarks - np.array([x0, y0], dtype=np.float64)
    region = None
    if face.face_region is not None and face.parse_matrix is not None:
        parse_matrix = face.parse_matrix.copy()
        parse_matrix[:, 2] += parse_matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
        region = cv2.warpAffine(face.face_region, parse_matrix, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0) > 127
    alpha = blend_mask(settings.mask, landmarks, back.shape, learned, settings.mask_shape, region) * valid
    region = frame[y0:y1, x0:x1]
    swapped = match_color(np.ascontiguousarray(back[..., :3]), region, alpha > 0.5, settings.color)
    region[:] = blend(region, swapped, alpha, settings.blend)

