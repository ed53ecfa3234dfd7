"""Face identity descriptors: dlib's 128-D ResNet embedding (shipped in face-recognition-models).

Two faces whose descriptors are closer than ``SAME_PERSON_DISTANCE`` (0.6, dlib's documented
threshold) are taken to be the same person. ``IdentityMatcher`` picks one person's faces out of a
crowd (``--reference`` of extract and convert).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfake_cli.errors import ConfigError, InputError, NoFaceError
from deepfake_cli.faces.base import DetectedFace, FaceBackend
from deepfake_cli.faces.offline import dlib_model_path

if TYPE_CHECKING:
    from deepfake_cli.media.alignments import FaceRecord

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


REFERENCE_FACES = 32
"""The most faces a reference is averaged over (videos and large folders are subsampled)."""


def aligned_descriptor(image: np.ndarray, record: FaceRecord, coverage: float) -> np.ndarray:
    """The descriptor of one aligned face (an extract folder's PNG, RGB uint8) from its record's
    landmarks (the template's 68 points when the record holds only 5); no detection."""
    from deepfake_cli.faces.align import template_points

    width = image.shape[1]
    points68 = record.aligned_landmarks() * (width / record.size) if record.has_68 else template_points(width, coverage)
    return face_descriptor(image, landmarks_face(points68))


def _aligned_descriptors(folder: Path, max_faces: int) -> list[np.ndarray]:
    """Descriptors of the faces an extract folder lists (with the records' landmarks; no detection)."""
    from deepfake_cli.media.alignments import load_alignments, split_missing
    from deepfake_cli.media.images import read_image

    alignments = load_alignments(folder)
    records = split_missing(alignments, folder)[0]
    if len(records) > max_faces:
        records = [records[i] for i in np.linspace(0, len(records) - 1, max_faces).round().astype(int)]
    return [aligned_descriptor(read_image(folder / r.file), r, alignments.coverage) for r in records]


def found_descriptors(path: str | Path, backend: FaceBackend, max_faces: int) -> list[np.ndarray]:
    """Descriptors of the largest face of each image / sampled video frame under ``path``."""
    from deepfake_cli.media.sources import media_frames

    descriptors = []
    for frame in media_frames(path, max_frames=max_faces):
        faces = backend.detect(frame)
        if faces:
            descriptors.append(face_descriptor(frame, faces[0]))
        if len(descriptors) >= max_faces:
            break
    return descriptors


class IdentityMatcher:
    """Tells the faces of one person (the reference) from everybody else's.

    A face matches when its distance to the reference is below ``threshold``: the median of its
    descriptor's distances to each of the reference's face descriptors -- dlib's pairwise
    same-person test (0.6 between two faces), passed by at least half of the reference's faces.
    (The distance to the mean descriptor would be looser: an average lies nearer every face, of
    anybody, than the faces lie to each other.) With one reference face it is the plain pairwise
    distance. ``reference`` is the mean descriptor (a summary, e.g. for cache keys).
    ``seconds`` and ``computed`` count the descriptors computed on frames, for benchmarks.
    """

    def __init__(self, reference: np.ndarray, threshold: float = SAME_PERSON_DISTANCE, faces: int = 1,
                 descriptors: np.ndarray | None = None) -> None:
        if not 0.0 < threshold <= 2.0:
            raise ConfigError(f"--reference-distance must be within 0..2 (dlib's same-person distance is "
                              f"{SAME_PERSON_DISTANCE}); got {threshold}")
        self.reference = np.asarray(reference, dtype=np.float64)
        self.descriptors = (self.reference[None] if descriptors is None
                            else np.asarray(descriptors, dtype=np.float64).reshape(-1, self.reference.size))
        self.threshold = threshold
        self.faces = faces
        self.seconds = 0.0
        self.computed = 0

    @classmethod
    def from_reference(cls, path: str | Path, backend: FaceBackend, threshold: float = SAME_PERSON_DISTANCE,
                       max_faces: int = REFERENCE_FACES) -> IdentityMatcher:
        """The matcher of the person in ``path``: an image, a folder of images or videos, a video, or
        an extract folder (its listed faces). The largest face of each image/frame is used; raises
        ``NoFaceError`` if there is none."""
        from deepfake_cli.media.alignments import ALIGNMENTS_FILE

        source = Path(path)
        if not source.exists():
            raise InputError("reference not found", str(source))
        if source.is_dir() and (source / ALIGNMENTS_FILE).is_file():
            descriptors = _aligned_descriptors(source, max_faces)
        else:
            descriptors = found_descriptors(source, backend, max_faces)
        if not descriptors:
            raise NoFaceError("no face found in the --reference image(s)", str(source))
        return cls(np.mean(descriptors, axis=0), threshold, len(descriptors), np.stack(descriptors))

    def descriptor(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """``face_descriptor`` of ``face`` (timed and counted)."""
        start = time.perf_counter()
        descriptor = face_descriptor(image, face)
        self.seconds += time.perf_counter() - start
        self.computed += 1
        return descriptor

    def distance_of(self, descriptor: np.ndarray) -> float:
        """Distance of a descriptor to the reference: the median of its distances to the reference's faces."""
        return float(np.median(np.linalg.norm(self.descriptors - np.asarray(descriptor)[None], axis=1)))

    def distance(self, image: np.ndarray, face: DetectedFace) -> float:
        """Distance of ``face`` (landmarked) in ``image`` to the reference (see ``distance_of``)."""
        return self.distance_of(self.descriptor(image, face))

    def distances(self, image: np.ndarray, faces: list[DetectedFace]) -> list[float]:
        """Distance of each of ``faces`` (landmarked) to the reference."""
        return [self.distance(image, face) for face in faces]

    def nearest(self, image: np.ndarray, faces: list[DetectedFace]) -> DetectedFace | None:
        """The face of ``faces`` nearest the reference if it matches, else None."""
        return self.nearest_and_distance(image, faces)[0]

    def nearest_and_distance(self, image: np.ndarray,
                             faces: list[DetectedFace]) -> tuple[DetectedFace | None, float]:
        """``nearest`` and the distance of the nearest face (``inf`` without faces)."""
        if not faces:
            return None, float("inf")
        distances = self.distances(image, faces)
        best = int(np.argmin(distances))
        return (faces[best] if distances[best] < self.threshold else None), distances[best]


def landmarks_face(landmarks: np.ndarray) -> DetectedFace:
    """A ``DetectedFace`` for 68 landmarks alone (the box around them), to compute a descriptor."""
    points = np.asarray(landmarks, dtype=np.float64)
    return DetectedFace(bbox=np.concatenate([points.min(axis=0), points.max(axis=0)]), score=1.0, landmarks=points)
