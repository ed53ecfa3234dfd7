"""The make-dataset stage: labelled real/fake videos for train-detect, made with swap models.

For each pair (videos of identity A, videos of identity B) and its swap model, every A video is
converted a2b and every B video b2a. The result under ROOT::

    real/<pair>_<a|b>_<stem>.mp4           the source videos (hard-linked or copied)
    fake/<pair>_<a|b>_<stem>__<model>_<direction>.mp4
    metadata.json                          DFDC-style: label, and for fakes original/model/direction
    dataset.csv                            path,label,group,original,model,direction

``train-detect --dataset ROOT`` reads it (DFDC layout), keeping every fake on the same side of a
split as its original. Re-running skips videos already written.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from deepfake_cli.checkpoint import atomic_path, write_json_atomic, write_text_atomic
from deepfake_cli.errors import ConfigError, InputError
from deepfake_cli.media.video import is_video
from deepfake_cli.swap.convert import ConvertOptions, convert

log = logging.getLogger(__name__)


@dataclass
class DatasetEntry:
    """One video of the dataset."""

    path: str
    label: str
    group: str
    original: str = ""
    model: str = ""
    direction: str = ""


@dataclass
class DatasetSummary:
    """What make-dataset wrote."""

    root: Path
    entries: list[DatasetEntry] = field(default_factory=list)
    made: int = 0
    reused: int = 0

    def line(self) -> str:
        """A one-line summary for the terminal."""
        real = sum(e.label == "REAL" for e in self.entries)
        return (f"make-dataset: {real} real and {len(self.entries) - real} fake videos "
                f"({self.made} converted now, {self.reused} already there) -> {self.root}")


def _videos(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError("input not found", str(path))
    found = sorted(p for p in path.rglob("*") if p.is_file() and is_video(p)) if path.is_dir() else [path]
    if not found or not all(is_video(p) for p in found):
        raise InputError("expected a video or a folder of videos", str(path))
    return found


def _place_real(source: Path, target: Path) -> None:
    """Hard-link the source video into the dataset (atomic by nature), else copy it atomically."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _name(video: Path, folder: Path) -> str:
    """A file-name stem unique within ``folder``: the video's path below it, folders joined by '-'."""
    relative = video.relative_to(folder) if folder.is_dir() else Path(video.name)
    return "-".join(relative.with_suffix("").parts)


def make_dataset(
    pairs: list[tuple[str | Path, str | Path]],
    models: list[str | Path],
    root: str | Path,
    options: ConvertOptions | None = None,
    progress: bool = True,
) -> DatasetSummary:
    """Convert each pair's videos with its model in both directions into a labelled dataset.

    With one model it serves every pair; otherwise there must be one model per pair, in order.
    """
    if not pairs:
        raise ConfigError("give at least one --pair A_VIDEOS B_VIDEOS")
    if len(models) not in (1, len(pairs)):
        raise ConfigError(f"give one model for all pairs or one per pair; got {len(models)} models for {len(pairs)} pairs")
    for model in models:
        if not Path(model).is_dir():
            raise InputError("model folder not found", str(model))
    target = Path(root)
    summary = DatasetSummary(root=target)
    for number, (videos_a, videos_b) in enumerate(pairs, start=1):
        model = Path(models[0] if len(models) == 1 else models[number - 1])
        for side, folder, direction in (("a", Path(videos_a), "a2b"), ("b", Path(videos_b), "b2a")):
            for video in _videos(folder):
                stem = _name(video, folder)
                real_rel = f"real/p{number}_{side}_{stem}.mp4"
                fake_rel = f"fake/p{number}_{side}_{stem}__{model.name}_{direction}.mp4"
                _place_real(video, target / real_rel)
                summary.entries.append(DatasetEntry(real_rel, "REAL", real_rel))
                if (target / fake_rel).exists():
                    summary.reused += 1
                else:
                    run_options = replace(options or ConvertOptions(), direction=direction)
                    convert(video, target / fake_rel, model, run_options, progress=progress)
                    summary.made += 1
                summary.entries.append(DatasetEntry(fake_rel, "FAKE", real_rel, real_rel, model.name, direction))
    _write_index(target, summary.entries)
    return summary


def _write_index(root: Path, entries: list[DatasetEntry]) -> None:
    metadata = {}
    for entry in entries:
        record = {"label": entry.label}
        if entry.original:
            record.update(original=entry.original, model=entry.model, direction=entry.direction)
        metadata[entry.path] = record
    write_json_atomic(root / "metadata.json", metadata)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "group", "original", "model", "direction"])
    for entry in entries:
        writer.writerow([entry.path, entry.label, entry.group, entry.original, entry.model, entry.direction])
    write_text_atomic(root / "dataset.csv", buffer.getvalue())
