"""Training monitors shared by every trainer: preview grids, the CSV loss log and its plot, TensorBoard."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from deepfake_cli.checkpoint import atomic_path, write_text_atomic
from deepfake_cli.media.images import write_image

PREVIEW_DIR = "previews"
LOG_FILE = "log.csv"
PLOT_FILE = "loss.png"
TENSORBOARD_DIR = "tensorboard"
BASE_COLUMNS = ("step", "seconds", "faces_per_s", "lr")
MIN_CELL = 96
GAP = 2


def preview_grid(rows: Sequence[torch.Tensor]) -> np.ndarray:
    """RGB uint8 grid of image rows (each ``[N,3,S,S]`` in [0,1]), cells at least ``MIN_CELL`` px."""
    count, size = rows[0].shape[0], rows[0].shape[-1]
    cell = max(size, MIN_CELL)
    grid = np.full((len(rows) * (cell + GAP) - GAP, count * (cell + GAP) - GAP, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        images = (row.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for c, image in enumerate(images):
            if cell != size:
                image = cv2.resize(image, (cell, cell), interpolation=cv2.INTER_NEAREST)
            y, x = r * (cell + GAP), c * (cell + GAP)
            grid[y:y + cell, x:x + cell] = image
    return grid


def write_preview(model_dir: Path, step: int, rows: Sequence[torch.Tensor]) -> Path:
    """Write ``previews/step_<N>.png`` and copy it to ``previews/latest.png``."""
    folder = model_dir / PREVIEW_DIR
    path = folder / f"step_{step:06d}.png"
    write_image(path, preview_grid(rows))
    with atomic_path(folder / "latest.png") as tmp:
        shutil.copyfile(path, tmp)
    return path


def tensorboard_writer(folder: Path) -> Any | None:
    """A TensorBoard ``SummaryWriter`` into ``folder`` if tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class TrainingLog:
    """``log.csv``: one row per logging interval (step, seconds, faces/s, lr, every loss).

    On resume, rows past the resumed step (written after the last checkpoint) are dropped, and
    new loss columns are added to the header. Rows also go to ``writer`` (TensorBoard) if given.
    """

    def __init__(self, path: Path, losses: Sequence[str], resume_step: int = 0, writer: Any | None = None) -> None:
        self.path, self.writer = path, writer
        self.rows: list[dict[str, str]] = []
        old_columns: list[str] = []
        if path.is_file() and resume_step > 0:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                old_columns = list(reader.fieldnames or [])
                self.rows = [row for row in reader if 0 < _step(row) <= resume_step]
        self.columns = list(dict.fromkeys([*BASE_COLUMNS, *old_columns, *losses]))
        self._rewrite()

    def append(self, values: dict[str, float]) -> None:
        """Add one row at the end of the file."""
        row = {k: f"{v:.6g}" for k, v in values.items()}
        self.rows.append(row)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, restval="", lineterminator="\n").writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                if name != "step":
                    self.writer.add_scalar(name, value, int(values["step"]))

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self.writer is not None:
            self.writer.close()

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (after a rollback)."""
        self.rows = [row for row in self.rows if _step(row) <= step]
        self._rewrite()

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="", extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())

    def plot(self, path: Path) -> None:
        """Draw every loss column against step into ``path`` (PNG, log-scale y)."""
        from matplotlib.figure import Figure

        losses = [c for c in self.columns if c not in BASE_COLUMNS]
        figure = Figure(figsize=(9, 5), dpi=100)
        axis = figure.subplots()
        for column in losses:
            points = [(float(r["step"]), float(r[column])) for r in self.rows if r.get(column)]
            points = [(s, v) for s, v in points if v > 0]
            if points:
                axis.plot(*zip(*points, strict=True), label=column, linewidth=1.2)
        axis.set_xlabel("step")
        axis.set_ylabel("loss (unweighted)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8, ncol=2)
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")


def _step(row: dict[str, str]) -> int:
    """The step of a log row; 0 for a torn or malformed row."""
    try:
        return int(float(row.get("step") or 0))
    except ValueError:
        return 0
