"""Labelled inputs for training and evaluation: ``--real/--fake`` paths or a ``--dataset ROOT``.

``--dataset`` recognises four layouts, checked in this order:

- DFDC: ``metadata.json`` (in ROOT or its direct sub-folders) mapping file names to
  ``{"label": "REAL"|"FAKE", "original": ..., "split": ..., "group": ...}``; a fake and its original
  share a group, so do records naming the same ``group`` (as ``dfk make-dataset`` writes it: both
  people of a pair; in its older output without ``group``, the pair number of ``real/p<K>_...``
  names) and hard links of one file. A fake's ``method`` (or, as make-dataset writes it, ``model``)
  names its generator, and its ``family`` the kind of fake (``swap``, ``reenact``, ``synth``).
- FaceForensics++: ``original_sequences/`` and ``manipulated_sequences/<method>/``; a fake
  ``000_003`` shares a group with originals ``000`` and ``003``; optional official split files
  ``splits/{train,val,test}.json`` (lists of id pairs). The ``<method>`` folder names the generator;
  its family follows from the method (``FFPP_FAMILIES``: Face2Face and NeuralTextures reenact, the
  others swap).
- Folders: ``real/`` and ``fake/``.
- CSV: ROOT is a ``.csv`` file (or a folder holding exactly one) with columns ``path,label`` and
  optionally ``group``, ``split``, ``method`` (or ``model``, as in make-dataset's ``dataset.csv``) and
  ``family``;
  paths are relative to the CSV's folder.

Every path a layout names must stay inside ROOT (after resolving ``..`` and symlinks).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from deepfake_cli.errors import InputError
from deepfake_cli.groups import Groups
from deepfake_cli.media.alignments import ALIGNMENTS_FILE
from deepfake_cli.media.images import is_image
from deepfake_cli.media.video import is_video

log = logging.getLogger(__name__)

REAL, FAKE = 0, 1
SPLITS = ("train", "val", "test")
_LABELS = {"real": REAL, "fake": FAKE, "0": REAL, "1": FAKE, "original": REAL, "manipulated": FAKE}
FAMILIES = ("swap", "reenact", "synth")  # identity swap, face reenactment, whole-face synthesis
FFPP_FAMILIES = {"deepfakes": "swap", "faceswap": "swap", "faceshifter": "swap", "deepfakedetection": "swap",
                 "face2face": "reenact", "neuraltextures": "reenact"}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}


@dataclass(frozen=True)
class LabelledInput:
    """One video, image or extract folder with its label, its source group, optional split and,
    for a fake, optionally the method (generator) that made it and its family (``FAMILIES``)."""

    path: Path
    label: int
    group: str | None = None
    split: str | None = None
    method: str | None = None
    family: str | None = None


def parse_label(value: object, where: str) -> int:
    """``REAL``/``FAKE`` (any case), ``0``/``1`` -> 0 (real) or 1 (fake)."""
    label = _LABELS.get(str(value).strip().lower())
    if label is None:
        raise InputError(f"label must be REAL or FAKE (or 0/1), got {value!r}", where)
    return label


def parse_split(value: object, where: str) -> str | None:
    """A split name normalised to train/val/test; empty means none."""
    text = str(value or "").strip().lower()
    if not text:
        return None
    if text not in _SPLIT_NAMES:
        raise InputError(f"split must be one of train, val, test; got {value!r}", where)
    return _SPLIT_NAMES[text]


def inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative`` if it stays inside ``root`` once resolved; else ``InputError``."""
    if not relative or Path(relative).is_absolute() or Path(relative).drive:
        raise InputError(f"path {relative!r} must be relative to the dataset root", where)
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(f"path {relative!r} leaves the dataset root; refused", where)
    return resolved


def is_faces_folder(path: Path) -> bool:
    """Whether ``path`` is an extract output folder (holds an alignments file)."""
    return path.is_dir() and (path / ALIGNMENTS_FILE).is_file()


def input_paths(path: Path) -> list[Path]:
    """A video, an image or an extract folder as given; any other folder searched recursively for
    videos and extract folders (stable order)."""
    if not path.exists():
        raise InputError("input not found", str(path))
    if path.is_file():
        if not (is_video(path) or is_image(path)):
            raise InputError("not a video, image or extract output folder", str(path))
        return [path]
    found = _media_under(path)
    if not found:
        raise InputError("folder holds no videos or extract output folders", str(path))
    return found


def expand(path: Path, label: int, group: str | None = None, split: str | None = None,
           method: str | None = None, family: str | None = None) -> list[LabelledInput]:
    """``input_paths(path)`` as labelled inputs (``method`` and ``family`` are kept for fakes only)."""
    fake = label == FAKE
    return [LabelledInput(item, label, group, split, method if fake else None, family if fake else None)
            for item in input_paths(path)]


def _method(value: object) -> str | None:
    """A generator name from a layout's record; empty means unknown."""
    text = str(value or "").strip()
    return text or None


def parse_family(value: object, where: str) -> str | None:
    """A fake's family (``FAMILIES``, any case); empty means unknown."""
    text = str(value or "").strip().lower()
    if text and text not in FAMILIES:
        raise InputError(f"family must be one of {', '.join(FAMILIES)}; got {value!r}", where)
    return text or None


def _media_under(folder: Path) -> list[Path]:
    """Videos and extract folders below ``folder`` (not descending into extract folders)."""
    if is_faces_folder(folder):
        return [folder]
    found: list[Path] = []
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            found.extend(_media_under(child))
        elif is_video(child):
            found.append(child)
    return found


def from_paths(real: Iterable[str | Path], fake: Iterable[str | Path],
               fakes_required: bool = True) -> list[LabelledInput]:
    """Labelled inputs from ``--real`` and ``--fake`` paths; both classes are required unless
    ``fakes_required`` is False (fakes made from the reals, ``--synthetic sbi``)."""
    items = [x for p in real for x in expand(Path(p), REAL)] + [x for p in fake for x in expand(Path(p), FAKE)]
    items = _unique(items)
    if fakes_required:
        _require_both(items, "--real/--fake")
    elif not any(item.label == REAL for item in items):
        raise InputError("no real inputs found; --synthetic makes fakes from real videos", "--real")
    return items


def _unique(items: list[LabelledInput]) -> list[LabelledInput]:
    """Drop repeated paths; a path labelled both real and fake is an error."""
    seen: dict[Path, LabelledInput] = {}
    for item in items:
        key = item.path.resolve()
        if key in seen and seen[key].label != item.label:
            raise InputError("listed as both real and fake", str(item.path))
        seen.setdefault(key, item)
    return list(seen.values())


def _require_both(items: list[LabelledInput], where: str) -> None:
    labels = {item.label for item in items}
    if labels != {REAL, FAKE}:
        missing = "real" if REAL not in labels else "fake"
        raise InputError(f"no {missing} inputs found; training needs both real and fake examples", where)


def read_dataset(root: str | Path) -> list[LabelledInput]:
    """Detect the layout of ``root`` and return its labelled inputs (see the module docstring)."""
    base = Path(root)
    if not base.exists():
        raise InputError("dataset not found", str(base))
    for matches, reader in _LAYOUTS:
        if matches(base):
            items = _unique(reader(base))
            if not items:
                raise InputError("the dataset lists no usable videos", str(base))
            return items
    raise InputError(
        "unknown dataset layout: expected real/ + fake/ folders, metadata.json (DFDC), "
        "original_sequences/ + manipulated_sequences/ (FaceForensics++) or a CSV file path,label", str(base))


def _dfdc_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    if (root / "metadata.json").is_file():
        return [root / "metadata.json"]
    return sorted(p for p in root.glob("*/metadata.json") if p.is_file())


def _read_dfdc(root: Path) -> list[LabelledInput]:
    entries: list[tuple[Path, int, str | None, str | None, list[str]]] = []
    groups = Groups()
    missing = 0
    for file in _dfdc_files(root):
        where = str(file)
        try:
            metadata = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"metadata.json is not valid JSON ({exc.__class__.__name__})", where) from None
        if not isinstance(metadata, dict):
            raise InputError("metadata.json must map file names to records", where)
        folder = file.parent.relative_to(root)
        old_pairs = _old_make_dataset(metadata)
        for name, record in sorted(metadata.items()):
            if not isinstance(record, dict):
                raise InputError(f"entry {name!r} is not a record", where)
            path = inside(root, str(folder / name), where)
            names = [_relative(root, path)]
            if record.get("original"):
                names.append(_relative(root, inside(root, str(folder / str(record["original"])), where)))
            if record.get("group"):  # make-dataset's: both people of a pair (and pairs sharing one)
                names.append(f"group:{folder.as_posix()}:{record['group']}")
            elif old_pairs and (pair := _MADE_NAME.match(name)):
                names.append(f"group:{folder.as_posix()}:p{pair.group(1)}")
            if not path.exists():
                groups.join(names)
                missing += 1
                continue
            status = path.stat()
            if status.st_nlink > 1 and status.st_ino:  # hard links of one video (make-dataset's real/)
                names.append(f"inode:{status.st_dev}:{status.st_ino}")
            groups.join(names)
            label = parse_label(record.get("label"), f"{where}: {name}")
            fake = label == FAKE
            method = _method(record.get("method") or record.get("model")) if fake else None
            family = parse_family(record.get("family"), f"{where}: {name}") if fake else None
            entries.append((path, label, parse_split(record.get("split"), f"{where}: {name}"), method, family,
                            names))
    if missing:
        log.warning("%d entries of metadata.json have no file under %s; skipped", missing, root)
    # each group is named by its first path, not the union-find's pick (which may be an inode number)
    named: dict[str, str] = {}
    for *_, names in entries:
        key = groups.find(names[0])
        named[key] = min(named.get(key, names[0]), names[0])
    return [LabelledInput(path, label, named[groups.find(names[0])], split, method, family)
            for path, label, split, method, family, names in entries]


_MADE_NAME = re.compile(r"^(?:real|fake)/p(\d+)_[ab]_")


def _old_make_dataset(metadata: dict) -> bool:
    """Whether ``metadata`` is make-dataset output from before it wrote ``group`` (its pair number
    is then read from the ``real/p<K>_<a|b>_...`` names)."""
    records = [r for r in metadata.values() if isinstance(r, dict)]
    return not any(r.get("group") for r in records) and any(
        r.get("direction") in ("a2b", "b2a") and _MADE_NAME.match(str(r.get("original") or "")) for r in records)


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root.resolve()).as_posix()


def _is_ffpp(root: Path) -> bool:
    return (root / "original_sequences").is_dir() and (root / "manipulated_sequences").is_dir()


def _ffpp_ids(stem: str) -> list[str]:
    """Source ids in an FF++ file name: ``000_003`` -> 000, 003; ``01_02__scene__X`` -> actors 01, 02."""
    head, actors, _ = stem.partition("__")
    prefix = "actor:" if actors else "id:"
    return [prefix + part for part in head.split("_") if part]


def _ffpp_splits(root: Path) -> dict[str, str]:
    """Id -> split from ``splits/{train,val,test}.json`` (lists of id pairs), when present."""
    assigned: dict[str, str] = {}
    for split in SPLITS:
        file = root / "splits" / f"{split}.json"
        if not file.is_file():
            continue
        try:
            pairs = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"split file is not valid JSON ({exc.__class__.__name__})", str(file)) from None
        for pair in pairs if isinstance(pairs, list) else []:
            for identity in pair if isinstance(pair, list) else [pair]:
                assigned["id:" + str(identity)] = split
    return assigned


def _read_ffpp(root: Path) -> list[LabelledInput]:
    groups = Groups()
    splits = _ffpp_splits(root)
    entries: list[tuple[LabelledInput, list[str]]] = []
    for folder, label in (("original_sequences", REAL), ("manipulated_sequences", FAKE)):
        for path in _media_under(root / folder):
            relative = path.relative_to(root)
            inside(root, str(relative), str(root / folder))
            ids = _ffpp_ids(path.stem) or [str(path)]
            groups.join(ids)
            known = {splits[i] for i in ids if i in splits}
            method = relative.parts[1] if label == FAKE and len(relative.parts) > 2 else None
            family = FFPP_FAMILIES.get(method.lower()) if method else None
            entries.append((LabelledInput(path, label, None, known.pop() if len(known) == 1 else None, method,
                                          family), ids))
    return [replace(i, group=groups.find(ids[0])) for i, ids in entries]


def _is_folders(root: Path) -> bool:
    return (root / "real").is_dir() and (root / "fake").is_dir()


def _read_folders(root: Path) -> list[LabelledInput]:
    items = []
    for name, label in (("real", REAL), ("fake", FAKE)):
        for item in expand(root / name, label):
            inside(root, str(item.path.relative_to(root)), str(root / name))
            items.append(item)
    return items


def _csv_file(root: Path) -> Path | None:
    if root.is_file():
        return root if root.suffix.lower() == ".csv" else None
    found = sorted(root.glob("*.csv"))
    return found[0] if len(found) == 1 else None


def _read_csv(root: Path) -> list[LabelledInput]:
    file = _csv_file(root)
    assert file is not None
    base = file.parent
    with file.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError("CSV file is empty", str(file))
    header = [cell.strip().lower() for cell in rows[0]]
    has_header = "path" in header and "label" in header
    columns = header if has_header else ["path", "label", "group", "split"]
    items = []
    for number, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        where = f"{file}: row {number}"
        record = dict(zip(columns, (cell.strip() for cell in row)))
        if not record.get("path") or "label" not in record:
            raise InputError("each row needs a path and a label", where)
        path = inside(base, record["path"], where)
        if not path.exists():
            raise InputError(f"file {record['path']!r} not found", where)
        label = parse_label(record["label"], where)
        items.extend(expand(path, label, record.get("group") or None, parse_split(record.get("split"), where),
                            _method(record.get("method") or record.get("model")),
                            parse_family(record.get("family"), where)))
    return items


_LAYOUTS: list[tuple[Callable[[Path], bool], Callable[[Path], list[LabelledInput]]]] = [
    (lambda root: bool(_dfdc_files(root)), _read_dfdc),
    (_is_ffpp, _read_ffpp),
    (_is_folders, _read_folders),
    (lambda root: _csv_file(root) is not None, _read_csv),
]
