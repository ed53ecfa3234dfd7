"""Face following: where the faces of a video's frames are, detected (and followed from frame to
frame) or read from an extract alignments file; what convert swaps.

A ``FaceLocator`` maps ``(source, frame index, frame)`` to the landmarks of the faces to swap.
With an ``IdentityMatcher`` (``--reference``) only the reference person's face is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from deepfake_cli.faces.align import alignment_matrix, warp_face
from deepfake_cli.faces.base import DetectedFace, FaceBackend
from deepfake_cli.faces.finder import FaceFinder
from deepfake_cli.faces.identity import IdentityMatcher, landmarks_face
from deepfake_cli.media.alignments import Alignments

DETECT_MAX_SIDE = 640
REDETECT_EVERY = 10
WINDOW_PX = 224
WINDOW_CONTEXT = 2.0
MIN_OVERLAP = 0.3
KEEP_AREA = 0.8
ABRUPT_OVERLAP = 0.5
ABRUPT_SCALE = 1.25
SAME_LOOK = 0.95
NEAR_THRESHOLD = 0.8
THUMB_PX = 16
THUMB_COVERAGE = 0.9


def detect_resized(detect: Callable[[np.ndarray], list[DetectedFace]], image: np.ndarray, side: int,
                   corner: tuple[int, int] = (0, 0)) -> list[DetectedFace]:
    """The faces ``detect`` finds in ``image`` resized so its longer side is ``side`` px, in the
    pixels of the frame ``image`` was cut from at ``corner`` (x, y)."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    if size != (width, height):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    factor = np.array([width / size[0], height / size[1]])
    offset = np.array(corner, dtype=np.float64)
    return [DetectedFace(bbox=face.bbox * np.tile(factor, 2) + np.tile(offset, 2), score=face.score,
                         landmarks=face.landmarks * factor + offset)
            for face in detect(np.ascontiguousarray(image))]


class ScaledBackend(FaceBackend):
    """Runs another backend's detector on a copy shrunk to ``max_side`` px; landmarks at full size.

    Faces in video frames are large, so detecting at 640 px finds the same faces several times
    faster on HD input; the landmarker still sees every pixel.
    """

    def __init__(self, backend: FaceBackend, max_side: int = DETECT_MAX_SIDE) -> None:
        self.backend, self.max_side = backend, max_side
        self.name = backend.name

    def detect_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        if max(image.shape[:2]) <= self.max_side:
            return self.backend.detect_boxes(image)
        return detect_resized(self.backend.detect_boxes, image, self.max_side)

    def landmarks(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        return self.backend.landmarks(image, faces)


class FaceLocator(Protocol):
    """Where the faces of frame ``index`` of ``source`` are: a list of landmark arrays in frame pixels."""

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]: ...


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


class DetectingLocator:
    """Detects and landmarks the largest face of each frame, following it between full searches.

    The whole frame is searched (shrunk to 640 px) on a source's first frame, every ``redetect``
    frames and whenever the face is lost. In between, the detector searches only a window
    ``WINDOW_CONTEXT`` times the last face's size around it, resized to ``WINDOW_PX`` px: a
    fraction of the cost, with the same landmark accuracy. The detector still confirms the face on
    every frame, so a face that leaves the picture (or a cut) is not followed. A full search keeps
    the face already followed unless another is clearly larger (``KEEP_AREA``), so the swap does not
    hop between people of similar size. ``redetect=1`` searches every whole frame.
    ``finder.times`` has the seconds spent.

    With a ``matcher`` the face followed is the reference person's: a full search landmarks every
    face and picks the one nearest the reference within its threshold (none if nobody matches: the
    frame is left as it is, and the next frame is searched whole again). Between full searches the
    window's face is checked against the reference whenever it may be someone else -- another face
    shows in the window, its box jumps (overlapping the last one less than ``ABRUPT_OVERLAP``) or
    changes size by more than ``ABRUPT_SCALE``, it looks different from the face last VERIFIED (a
    16 px grey thumbnail of the face aligned by its landmarks correlates less than ``SAME_LOOK``
    with the thumbnail taken when a descriptor last confirmed the person: a cut, or a slow dissolve
    to someone else in the same place, drifts away from it however small each frame's change), or
    the last confirmed distance was near the threshold (at least ``NEAR_THRESHOLD`` of it: then
    every frame is checked) -- and a face that does not match sends the frame to a full search, so
    the swap does not hop or drift to another person. The thumbnail is refreshed only after a
    descriptor check. Without a matcher no descriptor (nor thumbnail) is computed.
    """

    def __init__(self, backend: FaceBackend, redetect: int = REDETECT_EVERY,
                 matcher: IdentityMatcher | None = None) -> None:
        self.finder = FaceFinder(ScaledBackend(backend))
        self.matcher = matcher
        self.redetect = redetect
        self.full_searches = 0
        self._previous: tuple[Path, int] | None = None
        self._box: np.ndarray | None = None
        self._look: np.ndarray | None = None  # thumbnail of the face the last descriptor check confirmed
        self._near_threshold = False  # whether that check's distance was near the threshold
        self._since_search = 0

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        last = self._box if self._previous == (source, index - 1) else None
        self._previous = (source, index)
        faces = self._near(frame, last) if last is not None and self._since_search < self.redetect else []
        if faces:
            self._since_search += 1
        else:
            faces = self._search(frame, last)
            self.full_searches += 1
            self._since_search = 1
        self._box = faces[0].bbox if faces else None
        if self.matcher is not None and not faces:
            self._look = None
        return [face.landmarks for face in faces]

    def _verified(self, frame: np.ndarray, face: DetectedFace, distance: float) -> None:
        """A descriptor check confirmed ``face`` at ``distance``: its look is the one to compare with."""
        assert self.matcher is not None
        self._look = _thumbnail(frame, face.landmarks)
        self._near_threshold = distance >= NEAR_THRESHOLD * self.matcher.threshold

    def _candidates(self, found: list[DetectedFace]) -> list[DetectedFace]:
        return [face for face in found if self.finder.keeps(face)]

    def _search(self, frame: np.ndarray, last: np.ndarray | None) -> list[DetectedFace]:
        """The largest face of the whole frame (or the followed one, if about as large), landmarked."""
        candidates = self._candidates(self.finder.detect(frame))
        if not candidates:
            return []
        if self.matcher is not None:
            chosen, distance = self.matcher.nearest_and_distance(frame, self.finder.landmark(frame, candidates))
            if chosen is None:
                return []
            self._verified(frame, chosen, distance)
            return [chosen]
        chosen = max(candidates, key=lambda face: face.area)
        same = _overlapping(candidates, last) if last is not None else None
        if same is not None and same.area >= KEEP_AREA * chosen.area:
            chosen = same
        return self.finder.landmark(frame, [chosen])

    def _near(self, frame: np.ndarray, box: np.ndarray) -> list[DetectedFace]:
        """The face in a window around ``box`` that overlaps it most, landmarked; [] if none."""
        half = WINDOW_CONTEXT * max(box[2] - box[0], box[3] - box[1]) / 2
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        height, width = frame.shape[:2]
        x0, y0 = max(int(centre_x - half), 0), max(int(centre_y - half), 0)
        x1, y1 = min(int(centre_x + half) + 1, width), min(int(centre_y + half) + 1, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        found = detect_resized(self.finder.detect, frame[y0:y1, x0:x1], WINDOW_PX, (x0, y0))
        candidates = self._candidates(found)
        best = _overlapping(candidates, box)
        if best is None:
            return []
        faces = self.finder.landmark(frame, [best])
        if self.matcher is not None and faces and self._doubtful(frame, faces[0], box, len(candidates)):
            distance = self.matcher.distance(frame, faces[0])
            if distance >= self.matcher.threshold:
                return []
            self._verified(frame, faces[0], distance)
        return faces

    def _doubtful(self, frame: np.ndarray, face: DetectedFace, box: np.ndarray, faces_in_window: int) -> bool:
        """Whether the face found (and landmarked) near ``box`` may be someone else than the one
        last verified."""
        side = max(face.bbox[2] - face.bbox[0], face.bbox[3] - face.bbox[1])
        scale = side / max(box[2] - box[0], box[3] - box[1], 1e-6)
        if (faces_in_window > 1 or box_overlap(face.bbox, box) < ABRUPT_OVERLAP
                or not 1 / ABRUPT_SCALE <= scale <= ABRUPT_SCALE):
            return True
        if self._near_threshold or self._look is None:
            return True
        return float(_thumbnail(frame, face.landmarks) @ self._look) < SAME_LOOK


def _thumbnail(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The grey face aligned by its ``landmarks``, ``THUMB_PX`` px square, zero-mean and unit-norm
    (for correlation; aligned, the same person moving keeps its look, measured >= 0.93 over 20
    frames of a moving, relit clip, where a box crop fell to 0.57)."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    matrix = alignment_matrix(np.asarray(landmarks, dtype=np.float64), THUMB_PX, THUMB_COVERAGE)
    pixels = warp_face(grey, matrix, THUMB_PX).astype(np.float32).ravel()
    pixels -= pixels.mean()
    return pixels / max(float(np.linalg.norm(pixels)), 1e-6)


def _overlapping(faces: list[DetectedFace], box: np.ndarray) -> DetectedFace | None:
    """The face overlapping ``box`` most, if by at least ``MIN_OVERLAP`` (intersection over union)."""
    best = max(faces, key=lambda face: box_overlap(face.bbox, box), default=None)
    return best if best is not None and box_overlap(best.bbox, box) >= MIN_OVERLAP else None


class ReferenceFilter:
    """Of the faces another locator gives, only the one nearest the reference, if it matches."""

    def __init__(self, locator: FaceLocator, matcher: IdentityMatcher) -> None:
        self.locator, self.matcher = locator, matcher

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        faces = [landmarks_face(points) for points in self.locator(source, index, frame)]
        chosen = self.matcher.nearest(frame, faces)
        return [chosen.landmarks] if chosen is not None else []


class StoredLocator:
    """Looks the landmarks up in an extract alignments file (by source path, else file name)."""

    def __init__(self, alignments: Alignments) -> None:
        self.groups = alignments.by_source()
        self._names = {Path(key).name: key for key in self.groups}
        self._source: Path | None = None
        self._by_frame: dict[int, list[np.ndarray]] = {}

    def has(self, source: Path) -> bool:
        """Whether the file lists any face of ``source``."""
        return self._key(source) is not None

    def _key(self, source: Path) -> str | None:
        key = str(source.resolve())
        return key if key in self.groups else self._names.get(source.name)

    def __call__(self, source: Path, index: int, frame: np.ndarray) -> list[np.ndarray]:
        if source != self._source:
            key = self._key(source)
            self._source, self._by_frame = source, {}
            for record in self.groups.get(key, []) if key else []:
                self._by_frame.setdefault(record.frame, []).append(record.landmarks)
        return self._by_frame.get(index, [])
