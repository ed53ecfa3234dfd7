"""The make-dataset stage: labelled real/fake videos for train-detect, made with swap models.

For each pair (videos of identity A, videos of identity B) and its swap model, every A video is
converted a2b and every B video b2a. The result under ROOT::

    real/<pair>_<a|b>_<stem>.mp4           the source videos (hard-linked or copied)
    fake/<pair>_<a|b>_<stem>__<model>_<direction>.mp4
    metadata.json                          DFDC-style: label, and for fakes original/model/direction
    dataset.csv                            path,label,group,original,model,direction

``train-detect --dataset ROOT`` reads it (DFDC layout), keeping every fake on the same side of a
split as its original. Re-running skips videos already written.

Sharding (``shard=K/N``, e.g. one SLURM array task each): the work list is every (pair, video) in
order -- pairs as given, A videos then B videos, each folder sorted -- and shard K takes the items at
positions i with i % N == K-1 (``media.shards``). A sharded run writes ``metadata.shard-K-of-N.json``
and ``dataset.shard-K-of-N.csv`` listing only its own videos, never ``metadata.json``; whichever
run finds every video of the whole list on disk when it ends (the last shard to finish, or any
later run) also writes the complete ``metadata.json`` and ``dataset.csv``, the same as one
unsharded run writes.
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
from deepfake_cli.media.shards import Shard
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
    shard: Shard | None = None
    complete: bool = True  # metadata.json and dataset.csv cover the whole dataset
    total: int = 0  # videos (real and fake) of the whole dataset, every shard's

    def line(self) -> str:
        """A one-line summary for the terminal."""
        real = sum(e.label == "REAL" for e in self.entries)
        name = f"make-dataset (shard {self.shard.label})" if self.shard else "make-dataset"
        text = (f"{name}: {real} real and {len(self.entries) - real} fake videos "
                f"({self.made} converted now, {self.reused} already there) -> {self.root}")
        if self.shard is None:
            return text
        text += f"; listed in metadata.{self.shard.tag}.json"
        if self.complete:
            return text + f"; every shard is done: metadata.json and dataset.csv list all {self.total} videos"
        return text + "; metadata.json is written once every shard is done"


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
    shard: Shard | None = None,
) -> DatasetSummary:
    """Convert each pair's videos with its model in both directions into a labelled dataset.

    With one model it serves every pair; otherwise there must be one model per pair, in order.
    ``shard`` makes only that shard of the (pair, video) list (see the module docstring).
    """
    if not pairs:
        raise ConfigError("give at least one --pair A_VIDEOS B_VIDEOS")
    if len(models) not in (1, len(pairs)):
        raise ConfigError(f"give one model for all pairs or one per pair; got {len(models)} models for {len(pairs)} pairs")
    for model in models:
        if not Path(model).is_dir():
            raise InputError("model folder not found", str(model))
    target = Path(root)
    jobs = _jobs(pairs, models)
    summary = DatasetSummary(root=target, shard=shard, total=2 * len(jobs))
    for job in (shard.select(jobs) if shard else jobs):
        _place_real(job.video, target / job.real.path)
        summary.entries.append(job.real)
        if (target / job.fake.path).exists():
            summary.reused += 1
        else:
            run_options = replace(options or ConvertOptions(), direction=job.fake.direction)
            convert(job.video, target / job.fake.path, job.model, run_options, progress=progress)
            summary.made += 1
        summary.entries.append(job.fake)
    if shard is None:
        _write_index(target, summary.entries)
        return summary
    _write_index(target, summary.entries, f".{shard.tag}")
    everything = [entry for job in jobs for entry in (job.real, job.fake)]
    # outputs appear only complete (rename), so the last shard to finish sees every one of them
    summary.complete = all((target / entry.path).is_file() for entry in everything)
    if summary.complete:
        _write_index(target, everything)
    return summary


@dataclass
class _Job:
    """One (pair, video): the source, its model, and the real and fake entries it yields."""

    video: Path
    model: Path
    real: DatasetEntry
    fake: DatasetEntry


def _jobs(pairs: list[tuple[str | Path, str | Path]], models: list[str | Path]) -> list[_Job]:
    """Every (pair, video) in a stable order: pairs as given, A then B videos, each folder sorted."""
    jobs = []
    for number, (videos_a, videos_b) in enumerate(pairs, start=1):
        model = Path(models[0] if len(models) == 1 else models[number - 1])
        for side, folder, direction in (("a", Path(videos_a), "a2b"), ("b", Path(videos_b), "b2a")):
            for video in _videos(folder):
                stem = _name(video, folder)
                real_rel = f"real/p{number}_{side}_{stem}.mp4"
                fake_rel = f"fake/p{number}_{side}_{stem}__{model.name}_{direction}.mp4"
                jobs.append(_Job(video, model, DatasetEntry(real_rel, "REAL", real_rel),
                                 DatasetEntry(fake_rel, "FAKE", real_rel, real_rel, model.name, direction)))
    return jobs


def _write_index(root: Path, entries: list[DatasetEntry], tag: str = "") -> None:
    """``metadata<tag>.json`` and ``dataset<tag>.csv`` listing ``entries``."""
    metadata = {}
    for entry in entries:
        record = {"label": entry.label}
        if entry.original:
            record.update(original=entry.original, model=entry.model, direction=entry.direction)
        metadata[entry.path] = record
    write_json_atomic(root / f"metadata{tag}.json", metadata)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "group", "original", "model", "direction"])
    for entry in entries:
        writer.writerow([entry.path, entry.label, entry.group, entry.original, entry.model, entry.direction])
    write_text_atomic(root / f"dataset{tag}.csv", buffer.getvalue())
