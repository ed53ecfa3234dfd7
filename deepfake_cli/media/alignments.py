"""The alignments file: versioned JSON, one record per aligned face (never pickle).

Layout::

    {"version": 1, "tool": "dfk 0.1.0", "detector": "offline", "size": 256, "coverage": 0.625,
     "sources": {"<source path>": {"frames": 30, "faces": 30}},
     "faces": [{"source": ..., "frame": 0, "face": 0, "bbox": [x1, y1, x2, y2], "score": 0.99,
                "landmarks": [[x, y], ...68], "landmarks_68": true,
                "matrix": [[a, b, tx], [c, d, ty]], "size": 256,
                "file": "clip_000000_0.png", "sha1": "..."}]}

``matrix`` maps frame pixels to aligned-face pixels; ``source`` is the path as it was read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.checkpoint import write_json_atomic
from deepfake_cli.errors import InputError

ALIGNMENTS_FILE = "alignments.json"
FORMAT_VERSION = 1


SHEET_PREFIX = "sort_cluster_"
"""The name prefix of the contact sheets ``dfk sort`` writes into a face folder."""


def is_sort_output(path: Path) -> bool:
    """Whether ``path`` is a contact sheet ``dfk sort`` wrote (not a face)."""
    return path.name.startswith(SHEET_PREFIX) and path.suffix.lower() == ".png"


@dataclass
class FaceRecord:
    """One aligned face: where it came from and how it was cut out."""

    source: str
    frame: int
    face: int
    bbox: list[float]
    score: float
    landmarks: np.ndarray
    matrix: np.ndarray
    size: int
    file: str
    sha1: str

    @property
    def has_68(self) -> bool:
        """Whether the landmarks are the full iBUG 68 points (else the 5-point fallback)."""
        return len(self.landmarks) == 68

    def aligned_landmarks(self) -> np.ndarray:
        """Landmarks in aligned-face pixel coordinates."""
        return self.landmarks @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-safe values."""
        return {
            "source": self.source,
            "frame": self.frame,
            "face": self.face,
            "bbox": [round(float(v), 2) for v in self.bbox],
            "score": round(float(self.score), 5),
            "landmarks": np.round(self.landmarks, 3).tolist(),
            "landmarks_68": self.has_68,
            "matrix": np.round(self.matrix, 8).tolist(),
            "size": self.size,
            "file": self.file,
            "sha1": self.sha1,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "FaceRecord":
        """Parse and check one record; malformed records raise ``InputError``."""
        try:
            landmarks = np.asarray(data["landmarks"], dtype=np.float64)
            matrix = np.asarray(data["matrix"], dtype=np.float64)
            record = cls(
                source=str(data["source"]), frame=int(data["frame"]), face=int(data["face"]),
                bbox=[float(v) for v in data["bbox"]], score=float(data["score"]),
                landmarks=landmarks, matrix=matrix, size=int(data["size"]),
                file=str(data["file"]), sha1=str(data["sha1"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed face record ({exc})", where) from None
        if landmarks.ndim != 2 or landmarks.shape[1] != 2 or matrix.shape != (2, 3):
            raise InputError("face record has landmarks or matrix of the wrong shape", where)
        if record.file in ("", ".", "..") or Path(record.file).name != record.file:
            raise InputError(f"face file name {record.file!r} must not contain folders", where)
        return record


@dataclass
class Alignments:
    """All records of one extract output folder."""

    detector: str = "offline"
    size: int = 256
    coverage: float = 0.625
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    faces: list[FaceRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The whole file as JSON-safe values."""
        return {
            "version": FORMAT_VERSION,
            "tool": f"dfk {__version__}",
            "detector": self.detector,
            "size": self.size,
            "coverage": self.coverage,
            "sources": self.sources,
            "faces": [face.to_json() for face in self.faces],
        }

    def by_source(self) -> dict[str, list[FaceRecord]]:
        """Records grouped by source, each group sorted by frame then face index."""
        groups: dict[str, list[FaceRecord]] = {}
        for face in self.faces:
            groups.setdefault(face.source, []).append(face)
        return {k: sorted(v, key=lambda r: (r.frame, r.face)) for k, v in groups.items()}


def load_alignments(path: str | Path) -> Alignments:
    """Read an alignments file (or the one inside a folder) and validate it."""
    file = Path(path)
    if file.is_dir():
        file = file / ALIGNMENTS_FILE
    if not file.is_file():
        raise InputError("alignments file not found", str(file))
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"alignments file is not valid JSON ({exc.__class__.__name__})", str(file)) from None
    if not isinstance(data, dict) or "faces" not in data:
        raise InputError("not a dfk alignments file (no 'faces' list)", str(file))
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise InputError(f"unsupported alignments version {version!r} (this dfk reads {FORMAT_VERSION})", str(file))
    if not isinstance(data["faces"], list):
        raise InputError("'faces' must be a list of records", str(file))
    faces = [FaceRecord.from_json(item, f"{file}: face {i}") for i, item in enumerate(data["faces"])]
    try:
        return Alignments(
            detector=str(data.get("detector", "offline")),
            size=int(data.get("size", 256)),
            coverage=float(data.get("coverage", 0.625)),
            sources={str(k): dict(v) for k, v in dict(data.get("sources", {})).items()},
            faces=faces,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"malformed alignments header ({exc})", str(file)) from None


def split_missing(alignments: Alignments, folder: str | Path) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """The records whose PNG is in ``folder`` and those whose PNG is not (deleted by hand, or moved
    to ``rejected/`` by ``dfk sort``)."""
    present, missing = [], []
    for record in alignments.faces:
        (present if (Path(folder) / record.file).is_file() else missing).append(record)
    return present, missing


def save_alignments(path: str | Path, alignments: Alignments) -> None:
    """Write an alignments file atomically."""
    write_json_atomic(path, alignments.to_json())
