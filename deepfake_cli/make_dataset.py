"""The make-dataset stage: labelled real/fake videos for train-detect, of every family of fake.

For each pair (videos of identity A, videos of identity B) and each of its models, every video of
the pair gets one fake per model, by the model's family:

- ``swap`` (a ``train-swap`` model): every A video converted a2b, every B video b2a;
- ``reenact`` (a ``train-reenact`` model, or ``warp``, the training-free baseline): a photo of B
  (a frame of B's first video) animated by each A video (a2b), and a photo of A by each B video (b2a);
- ``synth`` (a ``train-facegan`` model): per real video one latent-walk clip of faces of nobody,
  as many frames as the real video (at most ``SYNTH_FRAMES``).

The result under ROOT::

    real/<pair>_<a|b>_<stem>.mp4           the source videos (hard-linked or copied)
    fake/<pair>_<a|b>_<stem>__<model>_<direction|synth>.mp4
    metadata.json                          DFDC-style: label, group, and for fakes original/model/kind/direction/family
    dataset.csv                            path,label,group,original,model,direction,kind,family

``model`` is the model folder's name (``warp`` for the baseline; what ``train-detect``/``detect
--dataset`` report ``per_method`` metrics by), ``family`` its family (``per_family`` metrics) and
``kind`` its generator kind (swap: ``original``/``gan``; reenact: ``learned``/``warp``; synth:
``gan``), read from the folder's ``state.json`` (else its ``config.yaml``). Re-running skips
videos already written.

Source groups (identity-safe splits): a fake shows identity A's video with identity B's face, so,
as FaceForensics++ fakes ``000_003`` join sources ``000`` and ``003``, every real video of A and of
B of pair K and every fake made from any of them (either direction, every model) form one group,
named ``p<K>``. Pairs that share an identity -- the same A or B given (the same folder or video
file once resolved), or the same video file inside both -- are one group, named after the first of
them (a union-find over pairs; one person under two different folders is not recognised). The
group is written to ``dataset.csv``'s ``group`` column and to each ``metadata.json`` record;
``train-detect --dataset ROOT`` reads it (DFDC layout) and splits by group, so no person appears
on two sides of train/val/test. Groups are computed from the whole pair list, so every shard
writes the same groups as one unsharded run. One pair alone is one group: train-detect needs at
least two groups (pairs of different people) to split.

Models per pair (``models``): one model serves every pair; as many models as pairs give one per
pair, in order; with a single pair every model converts it; and ``K:DIR`` gives model DIR to pair
K (1-based; repeat it for several models per pair). So two generators trained on the same pair
give one dataset with a fake of each per source video: a cross-generator experiment.

Sharding (``shard=K/N``, e.g. one SLURM array task each): the work list is every (pair, video) in
order -- pairs as given, A videos then B videos, each folder sorted -- and shard K takes the items at
positions i with i % N == K-1 (``media.shards``); an item makes that video's fake with every model
of its pair. A sharded run writes ``metadata.shard-K-of-N.json``
and ``dataset.shard-K-of-N.csv`` listing only its own videos, never ``metadata.json``; whichever
run finds every video of the whole list on disk when it ends (the last shard to finish, or any
later run) also writes the complete ``metadata.json`` and ``dataset.csv``, the same as one
unsharded run writes.

An orchestrator: it runs the convert, reenact and synth stages through their public APIs.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from deepfake_cli.checkpoint import CONFIG_FILE, STATE_FILE, atomic_path, write_json_atomic, write_text_atomic
from deepfake_cli.errors import ConfigError, InputError, NoFaceError
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.groups import Groups
from deepfake_cli.media.images import write_image
from deepfake_cli.media.shards import Shard
from deepfake_cli.media.video import VideoReader, is_video
from deepfake_cli.convert import ConvertOptions, convert
from deepfake_cli.reenact import ReenactOptions, reenact
from deepfake_cli.synth import synthesize

log = logging.getLogger(__name__)

WARP = "warp"  # -m warp: the training-free reenactment baseline
SYNTH_FRAMES = 120  # the most frames of a synthesised clip
PHOTO_TRIES = 8  # frames of a video tried, evenly spaced, for a reenactment photo with a face


@dataclass
class DatasetEntry:
    """One video of the dataset."""

    path: str
    label: str
    group: str
    original: str = ""
    model: str = ""
    direction: str = ""
    kind: str = ""  # the generator kind of a fake's model (swap: original | gan; reenact: learned | warp; synth: gan)
    family: str = ""  # a fake's family: swap | reenact | synth


@dataclass(frozen=True)
class Generator:
    """What makes one pair's fakes: a model folder (or ``warp``), its name, family and kind."""

    folder: Path
    family: str
    kind: str

    @property
    def name(self) -> str:
        """The ``model`` column: the folder's name."""
        return self.folder.name

    @property
    def baseline(self) -> bool:
        """The training-free reenactment warp (no model folder)."""
        return self.family == "reenact" and self.kind == WARP


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
    """Make a fake of each pair's videos with each of its models into a labelled dataset.

    ``models`` are assigned to pairs as the module docstring says (``assign_models``). ``shard``
    makes only that shard of the (pair, video) list.
    """
    if not pairs:
        raise ConfigError("give at least one --pair A_VIDEOS B_VIDEOS")
    per_pair = assign_models(len(pairs), models)
    target = Path(root)
    jobs = _jobs(pairs, per_pair)
    if len({job.real.group for job in jobs}) == 1:
        log.warning("every video of this dataset is in one source group (a pair's fakes combine both of its "
                    "people): train-detect --dataset needs at least 2 groups to split, so give pairs of "
                    "other people too")
    summary = DatasetSummary(root=target, shard=shard, total=sum(1 + len(job.fakes) for job in jobs))
    for job in (shard.select(jobs) if shard else jobs):
        _place_real(job.video, target / job.real.path)
        summary.entries.append(job.real)
        for generator, fake in job.fakes:
            if (target / fake.path).exists():
                summary.reused += 1
            else:
                _make(job, generator, fake, target, options or ConvertOptions(), progress)
                summary.made += 1
            summary.entries.append(fake)
    if shard is None:
        _write_index(target, summary.entries)
        return summary
    _write_index(target, summary.entries, f".{shard.tag}")
    everything = [entry for job in jobs for entry in job.entries()]
    # outputs appear only complete (rename), so the last shard to finish sees every one of them
    summary.complete = all((target / entry.path).is_file() for entry in everything)
    if summary.complete:
        _write_index(target, everything)
    return summary


def _make(job: _Job, generator: Generator, fake: DatasetEntry, root: Path, options: ConvertOptions,
          progress: bool) -> None:
    """Write ``fake`` (complete or not at all) with ``generator`` from ``job``'s video."""
    output = root / fake.path
    output.parent.mkdir(parents=True, exist_ok=True)
    if generator.family == "swap":
        convert(job.video, output, generator.folder, replace(options, direction=fake.direction), progress=progress)
    elif generator.family == "reenact":
        photo = _photo(job.partner, root / ".photos" / f"{job.partner_key}.png")
        reenact(photo, job.video, output, ReenactOptions(crf=options.crf, device=options.device),
                None if generator.baseline else generator.folder, progress=progress, backend=_backend())
    else:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=".synth-") as scratch:
            frames = min(VideoReader(job.video).info.frame_count or SYNTH_FRAMES, SYNTH_FRAMES)
            made = synthesize(generator.folder, 1, scratch, seed=zlib.crc32(fake.path.encode()), videos=1,
                              frames=max(frames, 2), device=options.device)
            os.replace(made.videos[0], output)


@functools.lru_cache(maxsize=1)
def _backend() -> FaceBackend:
    """The offline face backend, built once for every reenactment photo and fake of a run."""
    return create_backend("offline", device="cpu", detector_threads=1)


def _photo(video: Path, target: Path) -> Path:
    """A still of ``video`` showing a face (the first of ``PHOTO_TRIES`` evenly spaced frames that
    does), written once as ``target``: the photo a reenactment animates."""
    if target.is_file():
        return target
    reader = VideoReader(video)
    count = reader.info.frame_count or 1
    wanted = set(np.linspace(0, count - 1, min(PHOTO_TRIES, count)).round().astype(int).tolist())
    backend = _backend()
    for index, frame in enumerate(reader):
        if index in wanted and any(face.has_68 for face in backend.detect(frame)):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, frame)
            return target
        if index >= max(wanted):
            break
    raise NoFaceError("no face found in the video to take a reenactment photo from", str(video))


_PAIR_PREFIX = re.compile(r"^(\d+):(.+)$")


def assign_models(pair_count: int, models: list[str | Path]) -> list[list[Path]]:
    """The model folders of each pair, in order: ``K:DIR`` gives DIR to pair K; without prefixes,
    one model serves every pair, as many as pairs give one each, and a single pair takes them all."""
    if not models:
        raise ConfigError("give at least one -m MODEL (or -m warp)")
    prefixed: list[tuple[int, Path]] = []
    plain: list[Path] = []
    for model in models:
        text = str(model)
        match = _PAIR_PREFIX.match(text)
        if match and not Path(text).exists():
            prefixed.append((int(match.group(1)), Path(match.group(2))))
        else:
            plain.append(Path(text))
    if prefixed and plain:
        raise ConfigError("give every -m as K:MODEL (model of pair K) or none of them")
    if prefixed:
        per_pair: list[list[Path]] = [[] for _ in range(pair_count)]
        for number, folder in prefixed:
            if not 1 <= number <= pair_count:
                raise ConfigError(f"-m {number}:{folder} names pair {number}, but there are {pair_count} pairs")
            per_pair[number - 1].append(folder)
        missing = [str(k) for k, found in enumerate(per_pair, start=1) if not found]
        if missing:
            raise ConfigError(f"no model for pair {', '.join(missing)}; give -m K:MODEL for every pair")
    elif len(plain) == 1:
        per_pair = [list(plain) for _ in range(pair_count)]
    elif pair_count == 1:
        per_pair = [list(plain)]
    elif len(plain) == pair_count:
        per_pair = [[folder] for folder in plain]
    else:
        raise ConfigError(f"give one model for all pairs or one per pair (or K:MODEL for the models of pair K); "
                          f"got {len(plain)} models for {pair_count} pairs")
    for number, folders in enumerate(per_pair, start=1):
        names = [folder.name for folder in folders]
        for folder in folders:
            if not folder.is_dir() and str(folder) != WARP:
                raise InputError("model folder not found", str(folder))
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"pair {number} has two models named {twice[0]!r}; fake names and the dataset's "
                              "model column need distinct model folder names")
    return per_pair


def generator_of(folder: Path) -> Generator:
    """The family and kind of a model folder: ``state.json``'s ``family`` (swap models from before
    families were written are ``swap``) and ``kind``, else ``config.yaml``'s ``model.kind``;
    ``warp`` (not a folder) is the reenactment baseline."""
    if str(folder) == WARP and not folder.is_dir():
        return Generator(folder, "reenact", WARP)
    state: dict = {}
    try:
        loaded = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        state = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    family = str(state.get("family") or "swap")
    kind = str(state.get("kind") or "")
    if not kind:
        try:
            config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            model = config.get("model") if isinstance(config, dict) else None
            kind = str(model.get("kind") or "") if isinstance(model, dict) else ""
        except (OSError, yaml.YAMLError):
            pass
    return Generator(folder, family, kind)


@dataclass
class _Job:
    """One (pair, video): the source, its real entry, one (generator, fake entry) per model of the
    pair, and the other side's first video with its key (``p<K>_<side>``), whose still a
    reenactment animates."""

    video: Path
    real: DatasetEntry
    fakes: list[tuple[Generator, DatasetEntry]]
    partner: Path
    partner_key: str

    def entries(self) -> list[DatasetEntry]:
        """The real entry, then the fakes in model order."""
        return [self.real, *(fake for _, fake in self.fakes)]


def _jobs(pairs: list[tuple[str | Path, str | Path]], per_pair: list[list[Path]]) -> list[_Job]:
    """Every (pair, video) in a stable order: pairs as given, A then B videos, each folder sorted."""
    generators = {folder: generator_of(folder) for folders in per_pair for folder in folders}
    sources = [[(Path(folder), _videos(Path(folder))) for folder in pair] for pair in pairs]
    groups = pair_groups(sources)
    jobs = []
    for number, (sides, models, group) in enumerate(zip(sources, per_pair, groups), start=1):
        for index, (side, direction) in enumerate((("a", "a2b"), ("b", "b2a"))):
            folder, videos = sides[index]
            partner_side, partner_videos = "ba"[index], sides[1 - index][1]
            for video in videos:
                stem = _name(video, folder)
                real_rel = f"real/p{number}_{side}_{stem}.mp4"
                fakes = []
                for model in models:
                    made = generators[model]
                    way = "" if made.family == "synth" else direction
                    fakes.append((made, DatasetEntry(
                        f"fake/p{number}_{side}_{stem}__{made.name}_{way or 'synth'}.mp4", "FAKE", group, real_rel,
                        made.name, way, made.kind, made.family)))
                jobs.append(_Job(video, DatasetEntry(real_rel, "REAL", group), fakes, partner_videos[0],
                                 f"p{number}_{partner_side}"))
    return jobs


def pair_groups(sources: list[list[tuple[Path, list[Path]]]]) -> list[str]:
    """The source group of each pair, from its (folder, videos) of A and of B: ``p<K>``, K the
    first pair of its group. A pair is one group (its fakes combine both identities), and pairs
    that share an identity -- the same resolved folder or file given, or the same video file in
    both -- are one group too."""
    groups = Groups()
    for number, sides in enumerate(sources, start=1):
        names = [f"pair:{number}"]
        for folder, videos in sides:
            names += [f"source:{folder.resolve()}", *(f"source:{video.resolve()}" for video in videos)]
        groups.join(names)
    first: dict[str, int] = {}
    for number in range(1, len(sources) + 1):
        first.setdefault(groups.find(f"pair:{number}"), number)
    return [f"p{first[groups.find(f'pair:{number}')]}" for number in range(1, len(sources) + 1)]


def _write_index(root: Path, entries: list[DatasetEntry], tag: str = "") -> None:
    """``metadata<tag>.json`` and ``dataset<tag>.csv`` listing ``entries``."""
    metadata = {}
    for entry in entries:
        record = {"label": entry.label, "group": entry.group}
        if entry.original:
            record.update(original=entry.original, model=entry.model, kind=entry.kind, direction=entry.direction,
                          family=entry.family)
        metadata[entry.path] = record
    write_json_atomic(root / f"metadata{tag}.json", metadata)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "group", "original", "model", "direction", "kind", "family"])
    for entry in entries:
        writer.writerow([entry.path, entry.label, entry.group, entry.original, entry.model, entry.direction,
                         entry.kind, entry.family])
    write_text_atomic(root / f"dataset{tag}.csv", buffer.getvalue())
