"""``dfk sort``: clean an extract folder — the right person, sharp, well aligned, no near-copies.

For every face listed in ``alignments.json`` whose PNG is still in the folder, ``sort_faces``
measures:

* **fit**: RMS distance of the aligned inner landmarks (17-67) to the mean-face template, in units
  of the template's width (frontal faces measure 0.02-0.04); above ``max_fit`` is ``misaligned``
  (bad landmarks, or a head turned too far for the template). Misaligned faces are in no cluster
  (``cluster`` -1): their descriptors are not trusted to start or join one.
* **identity**: dlib's 128-D descriptor, computed on the aligned PNG with the record's landmarks
  (brought into the PNG's pixels); the faces that pass the fit check are clustered by
  ``cluster_descriptors``: average-linkage agglomerative clustering, merging while the mean
  pairwise distance between two clusters is below ``same_person`` (0.53; deterministic).
  Clusters are numbered by size, so cluster 0 is the main person; ``person`` picks another one.
* **blur**: variance of the Laplacian inside the landmark hull, divided by the median of the face's
  cluster (a person's footage shares a resolution; faces of other people are judged among themselves).
  1.0 is typical, a face well below ``min_blur`` is ``blurry``.
* **near-duplicates**: a face whose descriptor is within ``dup_distance`` and whose 32 px grey
  thumbnail differs by less than ``dup_pixels`` (mean absolute, 0-255) from a face kept earlier
  (alignments order) is a ``duplicate`` of it.

Each face gets one verdict, the first of misaligned, other_person, blurry, duplicate that applies,
else ``keep``. Results go to ``sort.json`` and one contact sheet per cluster
(``sort_cluster_<k>.png``); ``apply`` moves rejects into ``rejected/<reason>/`` and rewrites
``alignments.json`` without them. Records whose PNG is gone (deleted by hand) are always dropped
from ``alignments.json``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from deepfake_cli.checkpoint import write_json_atomic
from deepfake_cli.errors import ConfigError, InputError, NoFaceError
from deepfake_cli.faces.align import INNER, template_points
from deepfake_cli.faces.masks import hull_mask
from deepfake_cli.media.alignments import (ALIGNMENTS_FILE, SHEET_PREFIX, Alignments, FaceRecord, is_sort_output,
                                          load_alignments, save_alignments, split_missing)
from deepfake_cli.media.images import is_image, laplacian_variance, read_image, write_image

log = logging.getLogger(__name__)

SORT_FILE = "sort.json"
SAME_PERSON_MEAN = 0.53
"""Average-linkage cut: two clusters are one person while their faces' mean pairwise descriptor
distance is below this. Below dlib's pairwise 0.6 because a mean over many pairs must be clearly
same-person; chosen on ORL photos (0.6 merges look-alikes) and three videos (below 0.52 a woman's
turning head splits): see docs/extract-and-sort.md."""
REJECTED_DIR = "rejected"
REASONS = ("other_person", "misaligned", "blurry", "duplicate")
KEEP = "keep"
THUMB_PX = 32  # grey thumbnail side for the pixel distance of near-duplicates
SHEET_THUMB = 96
SHEET_COLUMNS = 10
SHEET_MAX_FACES = 150
SHEET_HEADER = 30
_COLOURS = {KEEP: (40, 180, 60), "other_person": (150, 150, 150), "misaligned": (230, 140, 20),
            "blurry": (60, 120, 230), "duplicate": (200, 60, 200)}


@dataclass
class SortOptions:
    """Thresholds of ``dfk sort``."""

    same_person: float = SAME_PERSON_MEAN
    person: int = 0
    min_blur: float = 0.3
    max_fit: float = 0.1
    dup_distance: float = 0.05
    dup_pixels: float = 2.0
    apply: bool = False

    def check(self) -> None:
        """Reject out-of-range values with a clear message."""
        for name, value in (("--same-person", self.same_person), ("--max-fit", self.max_fit)):
            if value <= 0:
                raise ConfigError(f"{name} must be > 0; got {value}")
        for name, value in (("--min-blur", self.min_blur), ("--dup-distance", self.dup_distance),
                            ("--dup-pixels", self.dup_pixels)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns the check off); got {value}")
        if self.person < 0:
            raise ConfigError(f"--person must be a cluster number >= 0; got {self.person}")


@dataclass
class FaceScore:
    """What sort measured for one face, and its verdict."""

    record: FaceRecord
    descriptor: np.ndarray
    sharpness: float
    fit: float
    thumb: np.ndarray
    cluster: int = -1
    blur: float = 1.0
    duplicate_of: str | None = None
    verdict: str = KEEP

    def to_json(self) -> dict[str, Any]:
        return {"file": self.record.file, "cluster": self.cluster, "blur": round(self.blur, 4),
                "fit": round(self.fit, 4), "duplicate_of": self.duplicate_of, "verdict": self.verdict}


@dataclass
class SortSummary:
    """What one sort run found and did."""

    folder: Path
    faces: list[FaceScore] = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)  # faces per cluster, cluster 0 first
    person: int = 0
    missing: int = 0
    unlisted: int = 0
    applied: bool = False
    sheets: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Faces per verdict (keep first, then each reject reason)."""
        return {name: sum(f.verdict == name for f in self.faces) for name in (KEEP, *REASONS)}

    def lines(self) -> list[str]:
        """The terminal summary."""
        counts = self.counts()
        rejects = len(self.faces) - counts[KEEP]
        sizes = ", ".join(f"{k}: {n}" for k, n in enumerate(self.clusters))
        which = "main person" if self.person == 0 else "kept person"
        lines = [f"sort: {len(self.faces)} faces in {len(self.clusters)} identity clusters ({sizes}); "
                 f"{which}: cluster {self.person} in {self.seconds:.1f}s",
                 "  " + ", ".join(f"{name} {n}" for name, n in counts.items())]
        if self.missing:
            lines.append(f"  dropped {self.missing} face{'s' if self.missing != 1 else ''} from {ALIGNMENTS_FILE}: "
                         "PNG deleted")
        if self.unlisted:
            lines.append(f"  {self.unlisted} PNGs are not listed in {ALIGNMENTS_FILE} and were left alone")
        if self.applied:
            lines.append(f"  moved {rejects} rejects into {self.folder / REJECTED_DIR}/<reason>/ and rewrote "
                         f"{ALIGNMENTS_FILE}")
        elif rejects:
            lines.append(f"  run again with --apply to move the {rejects} rejects into {self.folder / REJECTED_DIR}/")
        lines.append(f"  -> {self.folder / SORT_FILE}; contact sheets {SHEET_PREFIX}<k>.png")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "faces": [f.to_json() for f in self.faces],
            "clusters": [{"cluster": k, "faces": n, "kept": k == self.person,
                          "contact_sheet": f"{SHEET_PREFIX}{k}.png"} for k, n in enumerate(self.clusters)],
            "person": self.person,
            "counts": self.counts(),
            "missing_dropped": self.missing,
            "applied": self.applied,
        }


EXACT_FACES = 8000
"""Above this many faces ``cluster_descriptors`` clusters an evenly spaced sample of this size and
assigns the rest (the pairwise distances of N faces take N^2 / 2 doubles: 256 MB at 8000)."""


def cluster_descriptors(descriptors: np.ndarray, threshold: float, exact: int = EXACT_FACES) -> np.ndarray:
    """Cluster labels of ``descriptors`` (N x D): 0 is the largest cluster (ties: first seen).

    Average-linkage agglomerative clustering (UPGMA): starting from single faces, the two clusters
    whose mean pairwise descriptor distance is smallest merge, while that mean is below
    ``threshold``. Unlike centroid or single-face links, a chain of look-alikes does not pull two
    people together: every pair of faces across the two clusters counts. Deterministic (no
    randomness; the same input order gives the same labels).

    Above ``exact`` faces, an evenly spaced sample of ``exact`` faces is clustered so; every other
    face joins the sample cluster with the smallest mean distance to it when that is below
    ``threshold``, and the faces that join none are clustered among themselves the same way.
    """
    descriptors = np.asarray(descriptors, dtype=np.float64)
    count = len(descriptors)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    if count <= exact:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import pdist

        # fcluster keeps merges at distances <= its cut: cut just below the threshold
        cut = float(np.nextafter(threshold, -np.inf))
        labels = fcluster(linkage(pdist(descriptors), method="average"), cut, criterion="distance") - 1
        return _by_size(labels.astype(np.int64))
    sample = np.unique(np.linspace(0, count - 1, exact).round().astype(np.int64))
    labels = np.full(count, -1, dtype=np.int64)
    labels[sample] = cluster_descriptors(descriptors[sample], threshold, exact)
    rest = np.setdiff1d(np.arange(count), sample)
    clusters = int(labels[sample].max()) + 1
    members = [descriptors[sample][labels[sample] == k] for k in range(clusters)]
    for chunk in np.array_split(rest, max(1, len(rest) // 512)):
        means = np.stack([_mean_distances(descriptors[chunk], m) for m in members], axis=1)
        best = means.argmin(axis=1)
        joined = means[np.arange(len(chunk)), best] < threshold
        labels[chunk[joined]] = best[joined]
    alone = np.flatnonzero(labels < 0)
    if len(alone):
        labels[alone] = clusters + cluster_descriptors(descriptors[alone], threshold, exact)
    return _by_size(labels)


def _mean_distances(points: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of each row of ``points`` to the rows of ``members``."""
    squared = (points ** 2).sum(1)[:, None] + (members ** 2).sum(1)[None] - 2.0 * points @ members.T
    return np.sqrt(np.maximum(squared, 0.0)).mean(axis=1)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered by cluster size, largest first (ties: the cluster seen first)."""
    present = sorted(set(labels.tolist()), key=lambda k: (-int((labels == k).sum()), int(np.argmax(labels == k))))
    renumber = {old: new for new, old in enumerate(present)}
    return np.array([renumber[int(k)] for k in labels], dtype=np.int64)


def _points(record: FaceRecord, width: int, coverage: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The record's landmarks in the PNG's pixels, the 68 points given to dlib (the template's
    when the record has only 5) and the template points they are fitted to."""
    points = record.aligned_landmarks() * (width / record.size)
    template = template_points(width, coverage, count=68 if record.has_68 else 5)
    return points, points if record.has_68 else template_points(width, coverage), template


def _fit(points: np.ndarray, template: np.ndarray, width: int, coverage: float) -> float:
    """RMS landmark distance to the template (inner 51 points of 68) over the template's width."""
    if len(points) == 68:
        points, template = points[INNER], template[INNER]
    return float(np.sqrt(((points - template) ** 2).sum(axis=1).mean()) / (width * coverage))


def score_face(image: np.ndarray, record: FaceRecord, coverage: float) -> FaceScore:
    """Descriptor, sharpness, fit and thumbnail of one aligned face (RGB uint8)."""
    from deepfake_cli.faces.identity import face_descriptor, landmarks_face

    width = image.shape[1]
    points, points68, template = _points(record, width, coverage)
    descriptor = face_descriptor(image, landmarks_face(points68))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
    sharpness = laplacian_variance(grey, hull_mask(points68, grey.shape) > 0)
    return FaceScore(record, descriptor, sharpness, _fit(points, template, width, coverage), thumb)


def judge(faces: list[FaceScore], options: SortOptions) -> list[int]:
    """Set cluster, relative blur, duplicate and verdict of every face (in order); the cluster sizes.

    Faces that fail the landmark check (fit above ``max_fit``) are ``misaligned`` and take no part
    in clustering (cluster -1): bad landmarks give meaningless descriptors, which must neither start
    a cluster nor join one.
    """
    aligned = [f for f in faces if f.fit <= options.max_fit]
    for face in faces:
        face.cluster, face.duplicate_of = -1, None
    labels = cluster_descriptors(np.stack([f.descriptor for f in aligned]), options.same_person) if aligned else []
    sizes = np.bincount(labels).tolist() if len(labels) else []
    for face, label in zip(aligned, labels, strict=True):
        face.cluster = int(label)
    groups = [[f for f in faces if f.cluster == k] for k in range(len(sizes))]
    groups.append([f for f in faces if f.cluster < 0])  # misaligned faces: blur among themselves
    for members in groups:
        median = float(np.median([f.sharpness for f in members])) if members else 0.0
        for face in members:
            face.blur = face.sharpness / median if median > 0 else 1.0
    kept: list[FaceScore] = []
    for face in faces:
        if face.cluster < 0:
            face.verdict = "misaligned"
        elif face.cluster != options.person:
            face.verdict = "other_person"
        elif face.blur < options.min_blur:
            face.verdict = "blurry"
        else:
            face.duplicate_of = _duplicate_of(face, kept, options)
            face.verdict = "duplicate" if face.duplicate_of else KEEP
            if face.verdict == KEEP:
                kept.append(face)
    return sizes


def _duplicate_of(face: FaceScore, kept: list[FaceScore], options: SortOptions) -> str | None:
    if not kept or options.dup_distance <= 0 or options.dup_pixels <= 0:
        return None
    distances = np.linalg.norm(np.stack([k.descriptor for k in kept]) - face.descriptor, axis=1)
    best: tuple[float, str] | None = None
    for index in np.flatnonzero(distances < options.dup_distance):
        pixels = float(np.abs(kept[index].thumb - face.thumb).mean())
        if pixels < options.dup_pixels and (best is None or pixels < best[0]):
            best = (pixels, kept[index].record.file)
    return best[1] if best else None


def contact_sheet(images: list[np.ndarray], verdicts: list[str], title: str) -> np.ndarray:
    """A grid of thumbnails (RGB uint8), each framed in its verdict's colour and labelled if rejected."""
    columns = max(1, min(SHEET_COLUMNS, len(images)))
    rows = max(1, -(-len(images) // columns))
    cell = SHEET_THUMB + 4
    sheet = np.full((SHEET_HEADER + rows * cell, max(columns * cell, 360), 3), 255, dtype=np.uint8)
    cv2.putText(sheet, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (image, verdict) in enumerate(zip(images, verdicts, strict=True)):
        y, x = SHEET_HEADER + (i // columns) * cell, (i % columns) * cell
        sheet[y:y + cell, x:x + cell] = _COLOURS[verdict]
        thumb = cv2.resize(image, (SHEET_THUMB, SHEET_THUMB), interpolation=cv2.INTER_AREA)
        sheet[y + 2:y + 2 + SHEET_THUMB, x + 2:x + 2 + SHEET_THUMB] = thumb
        if verdict != KEEP:
            label = verdict.replace("other_person", "other").replace("misaligned", "fit")
            cv2.rectangle(sheet, (x + 2, y + cell - 16), (x + cell - 3, y + cell - 3), (0, 0, 0), -1)
            cv2.putText(sheet, label, (x + 5, y + cell - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return sheet


MISALIGNED_SHEET = f"{SHEET_PREFIX}misaligned.png"


def _write_sheets(folder: Path, faces: list[FaceScore], sizes: list[int], person: int) -> list[Path]:
    """One contact sheet per cluster, and one of the misaligned faces (in no cluster) if any (at
    most ``SHEET_MAX_FACES`` faces each, evenly sampled); stale sheets of an earlier run are removed."""
    written = []
    groups = [(k, [f for f in faces if f.cluster == k]) for k in range(len(sizes))]
    groups.append((-1, [f for f in faces if f.cluster < 0]))
    for k, members in groups:
        if not members:
            continue
        shown = [members[int(i)] for i in np.linspace(0, len(members) - 1, min(len(members), SHEET_MAX_FACES))]
        if k < 0:
            title, path = f"misaligned (no cluster): {len(members)} faces", folder / MISALIGNED_SHEET
        else:
            kept = sum(f.verdict == KEEP for f in members)
            role = "kept person" if k == person else "other person"
            title, path = f"cluster {k} ({role}): {len(members)} faces, {kept} kept", folder / f"{SHEET_PREFIX}{k}.png"
        if len(shown) < len(members):
            title += f" - showing {len(shown)}"
        images = [read_image(folder / f.record.file) for f in shown]
        write_image(path, contact_sheet(images, [f.verdict for f in shown], title))
        written.append(path)
    for stale in folder.glob(f"{SHEET_PREFIX}*.png"):
        if stale not in written:
            stale.unlink()
    return written


def _without(alignments: Alignments, gone: set[str]) -> Alignments:
    """The alignments without the records of the files in ``gone`` (per-source face counts updated)."""
    faces = [r for r in alignments.faces if r.file not in gone]
    sources = {key: dict(value) for key, value in alignments.sources.items()}
    for key, value in sources.items():
        value["faces"] = sum(r.source == key for r in faces)
    return Alignments(detector=alignments.detector, size=alignments.size, coverage=alignments.coverage,
                      sources=sources, faces=faces)


def _apply(folder: Path, faces: list[FaceScore], alignments: Alignments) -> None:
    """Move rejects into ``rejected/<reason>/``, then rewrite the alignments without them.

    Files move first: if the run stops in between, the next sort drops the records whose PNG is gone.
    """
    rejects = [f for f in faces if f.verdict != KEEP]
    for face in rejects:
        target = folder / REJECTED_DIR / face.verdict / face.record.file
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / face.record.file, target)
    save_alignments(folder / ALIGNMENTS_FILE, _without(alignments, {f.record.file for f in rejects}))


def sort_faces(folder: str | Path, options: SortOptions | None = None, progress: bool = True) -> SortSummary:
    """Sort the faces of an extract folder; see the module docstring."""
    options = options or SortOptions()
    options.check()
    folder = Path(folder)
    if not folder.exists():
        raise InputError("face folder not found", str(folder))
    if not folder.is_dir():
        raise InputError("not a folder: dfk sort takes an extract output folder", str(folder))
    if not (folder / ALIGNMENTS_FILE).is_file():
        raise InputError(f"no {ALIGNMENTS_FILE} here: dfk sort needs an extract output folder "
                         "(dfk extract ... -o FOLDER)", str(folder))
    started = time.perf_counter()
    alignments = load_alignments(folder)
    summary = SortSummary(folder=folder, person=options.person)
    gone = {r.file for r in split_missing(alignments, folder)[1]}
    if gone:
        summary.missing = len(gone)
        alignments = _without(alignments, gone)
        save_alignments(folder / ALIGNMENTS_FILE, alignments)
        log.info("dropped %d faces from %s whose PNG was deleted", len(gone), ALIGNMENTS_FILE)
    listed = {r.file for r in alignments.faces}
    summary.unlisted = sum(1 for p in folder.iterdir()
                           if p.is_file() and is_image(p) and p.name not in listed and not is_sort_output(p))
    if not alignments.faces:
        raise NoFaceError(f"{ALIGNMENTS_FILE} lists no face whose PNG is here", str(folder))
    for record in tqdm(alignments.faces, unit="face", disable=not progress, dynamic_ncols=True, desc="sort"):
        summary.faces.append(score_face(read_image(folder / record.file), record, alignments.coverage))
    summary.clusters = judge(summary.faces, options)
    count = len(summary.clusters)
    if options.person and options.person >= count:  # no cluster at all (every face misaligned) is fine for 0
        raise ConfigError(f"--person {options.person}: there are only {count} clusters"
                          + (f" (0..{count - 1})" if count else " (every face is misaligned)"))
    summary.sheets = _write_sheets(folder, summary.faces, summary.clusters, options.person)
    if options.apply:
        _apply(folder, summary.faces, alignments)
        summary.applied = True
    summary.seconds = time.perf_counter() - started
    write_json_atomic(folder / SORT_FILE, summary.to_json())
    return summary
