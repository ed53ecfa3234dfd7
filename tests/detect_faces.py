"""Synthetic labelled face datasets for detector tests: extract folders written directly (no face
detection), one per video, listed in a CSV with group, split and method columns.

A real "face" is smooth noise; a fake is the same kind of image with a blocky, upsampled patch in
the middle (a crude stand-in for a low-resolution generator blended into a face), so a tiny model
separates them in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deepfake_cli.media.alignments import Alignments, FaceRecord, save_alignments
from deepfake_cli.media.images import write_image

SIZE = 32


def face(rng: np.random.Generator, fake: bool) -> np.ndarray:
    """One 32 px RGB face crop."""
    image = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    image = (image - image.mean()) * 3 + 128
    if fake:
        small = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
        image[8:24, 8:24] = cv2.resize(small, (16, 16), interpolation=cv2.INTER_NEAREST)
    return np.clip(image, 0, 255).astype(np.uint8)


def faces_folder(folder: Path, rng: np.random.Generator, fake: bool, frames: int) -> Path:
    """An extract output folder of one video source with ``frames`` faces."""
    folder.mkdir(parents=True)
    records = []
    for frame in range(frames):
        name = f"clip_{frame:06d}_0.png"
        write_image(folder / name, face(rng, fake))
        records.append(FaceRecord(source=f"/videos/{folder.name}.mp4", frame=frame, face=0, bbox=[0, 0, 10, 10],
                                  score=0.9, landmarks=np.zeros((68, 2)), matrix=np.eye(2, 3), size=SIZE,
                                  file=name, sha1="0"))
    save_alignments(folder / "alignments.json", Alignments(size=SIZE, faces=records))
    return folder


def write_dataset(root: Path, groups: dict[str, str], frames: int = 6, methods: tuple[str, ...] = ("m1", "m2"),
                  seed: int = 0) -> Path:
    """A CSV dataset: per group (name -> split, "" for none) one real video and one fake made from
    it (same group), the fakes' methods cycling through ``methods``, the first method's fakes of
    family swap and the others' reenact. Returns the CSV path."""
    rng = np.random.default_rng(seed)
    rows = ["path,label,group,split,method,family"]
    for k, (group, split) in enumerate(groups.items()):
        for label in ("real", "fake"):
            faces_folder(root / label / group, rng, label == "fake", frames)
            method = methods[k % len(methods)] if label == "fake" else ""
            family = ("swap" if method == methods[0] else "reenact") if method else ""
            rows.append(f"{label}/{group},{label},{group},{split},{method},{family}")
    csv = root / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def relabel_split(csv: Path, split: str, out: Path, drop: bool = False) -> Path:
    """A copy of the CSV (beside it) with the labels of ``split`` swapped real <-> fake, or its rows dropped."""
    lines = csv.read_text().splitlines()
    kept = [lines[0]]
    for line in lines[1:]:
        path, label, group, row_split, *named = line.split(",")
        if row_split == split:
            if drop:
                continue
            label = "fake" if label == "real" else "real"
        kept.append(",".join([path, label, group, row_split, *named]))
    out.write_text("\n".join(kept) + "\n")
    return out
