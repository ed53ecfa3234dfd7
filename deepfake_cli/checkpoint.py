"""Safe checkpoints: atomic writes, checkpoint sets, ``weights_only`` loading, backup rotation.

A model directory holds ``model.pt`` (tensors and plain containers only), ``config.yaml`` (the
resolved config), ``state.json`` (step and bookkeeping) and the last K backups
``model.step<N>.pt``. Every file is written to a temporary name, fsynced and renamed (the folder
fsynced after), so a crash leaves each file old or new, never torn.

Files that belong together (a swap model's ``model.pt``, ``training.pt`` and ``state.json``) are
saved as a *checkpoint set* (``save_set``): written into a new folder ``ckpt-<step>/``, then
committed by one atomic rename of the manifest ``checkpoint.json`` (step, folder, size and
SHA-256 of each file, and the same for the previous set). Only then are the top-level names
(``model.pt`` ...) pointed at the new files (hard links, copies where links fail) and sets other
than the new and the previous one removed. ``open_set`` checks every file against the manifest
and falls back to the previous set, with a one-line warning naming what was wrong. A folder
without ``checkpoint.json`` (written before sets, or edited by hand) loads its top-level files.

A trainer's model folder (``save_model``/``load_model``) is such a set of three files:
``model.pt`` (``{"step", ...weights}``), ``training.pt`` (``{"step", ...optimiser state}``) and
``state.json`` (``{...info, "step"}``), with ``config.yaml`` beside it (``read_model_config``).
"""

from __future__ import annotations

import json
import os
import errno
import hashlib
import logging
import pickle
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch
import yaml

from deepfake_cli.config import dump_yaml, from_dict
from deepfake_cli.errors import CheckpointError, DfkError

log = logging.getLogger(__name__)

# Fault injection for tests: called with a stage name at every point of ``save_set`` where a crash
# would leave a different state on disk ("before model.pt", "after model.pt", "before checkpoint.json",
# "after checkpoint.json", "linked model.pt", "cleaned"). Tests set it to raise or to ``os._exit``.
_fault_hook: Callable[[str], None] | None = None


def _fault(stage: str) -> None:
    if _fault_hook is not None:
        _fault_hook(stage)

MODEL_FILE = "model.pt"
TRAINING_FILE = "training.pt"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "checkpoint.json"
SET_PREFIX = "ckpt-"
_BACKUP = re.compile(r"^model\.step(\d+)\.pt$")


def new_temp_file(target: str | Path, suffix: str = ".tmp") -> Path:
    """Create an empty, unique hidden file beside ``target`` and return its path.

    It is opened with ``O_CREAT | O_EXCL`` and mode 0o666, so the kernel applies the process umask
    exactly as for any new file (no ``chmod``, and the umask is never read or changed).
    """
    target = Path(target)
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"no free temporary name beside {target}")


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s data to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to stable storage.

    Systems without directory fsync (Windows; some network filesystems answer EINVAL) skip it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it, rename it over ``path`` and
    fsync the folder, so after a crash ``path`` holds the old or the new content, whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_file(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_weights(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a dict of state dicts/tensors atomically with ``torch.save``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything else is refused as unsafe."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError("checkpoint not found", str(file))
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(f"refusing to load a checkpoint that is not plain weights: {first}", str(file)) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint: {first}", str(file)) from None
    if not isinstance(payload, dict):
        raise CheckpointError("checkpoint does not hold a dict of weights", str(file))
    return payload


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object, turning corruption into a ``CheckpointError``."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("file not found", str(file)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"corrupt JSON: {exc}", str(file)) from None
    if not isinstance(data, dict):
        raise CheckpointError("expected a JSON object", str(file))
    return data


def rotate_backups(model_dir: str | Path, step: int, keep: int, source: str | Path | None = None) -> None:
    """Hard-link (or copy) ``source`` (default ``model.pt``) to ``model.step<step>.pt`` and keep the
    newest ``keep``."""
    folder = Path(model_dir)
    if keep <= 0:
        return
    source = Path(source) if source is not None else folder / MODEL_FILE
    backup = folder / f"model.step{step}.pt"
    if backup.exists():
        backup.unlink()
    try:
        os.link(source, backup)
    except OSError:
        with atomic_path(backup) as tmp:
            tmp.write_bytes(source.read_bytes())
    for old in list_backups(folder)[:-keep]:
        old.unlink()


def list_backups(model_dir: str | Path) -> list[Path]:
    """Backups ``model.step<N>.pt`` in ``model_dir``, oldest first."""
    found = []
    for entry in Path(model_dir).iterdir():
        match = _BACKUP.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


# --- checkpoint sets ------------------------------------------------------------------------------

Writer = Callable[[Path], None]


def cpu_copy(value: Any) -> Any:
    """A deep copy of a state dict with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(v) for v in value)
    return value


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """Put ``source``'s content at ``target`` atomically: a hard link where the filesystem has them."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


@dataclass
class CheckpointSet:
    """A verified set: its step, the path of each file, and what was wrong with a newer set (or None)."""

    step: int
    paths: dict[str, Path]
    fallback: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


def _entry_problem(folder: Path, entry: Mapping[str, Any]) -> str | None:
    """None if every file ``entry`` lists matches its size and SHA-256, else what is wrong."""
    step = entry.get("step")
    files = entry.get("files")
    if not isinstance(step, int) or not isinstance(files, dict) or not isinstance(entry.get("folder"), str):
        return "checkpoint.json has an entry without step, folder or files"
    base = folder / entry["folder"]
    for name, record in files.items():
        if not isinstance(record, dict):
            return f"checkpoint.json has no size and SHA-256 for {name} of step {step}"
        path = base / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} of step {step} is missing ({path.relative_to(folder)})"
        if size < record.get("size", -1):
            return f"{name} of step {step} is truncated (size {size} of {record['size']})"
        if size != record.get("size"):
            return f"{name} of step {step} has the wrong size ({size} instead of {record.get('size')})"
        if sha256_file(path) != record.get("sha256"):
            return f"{name} of step {step} is corrupt (its SHA-256 does not match checkpoint.json)"
    return None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    return read_json(path)


def open_set(model_dir: str | Path) -> CheckpointSet | None:
    """The newest complete checkpoint set of ``model_dir`` (every file of it checked), or None for a
    folder without ``checkpoint.json``.

    A set whose files do not match the manifest (missing, truncated, corrupt, from another save)
    is skipped for the previous one, with a warning naming the file and the step loaded instead;
    ``CheckpointError`` if no set is complete.
    """
    folder = Path(model_dir)
    manifest = _read_manifest(folder)
    if manifest is None:
        return None
    problems: list[str] = []
    for entry in (manifest, manifest.get("previous")):
        if not isinstance(entry, dict):
            continue
        problem = _entry_problem(folder, entry)
        if problem is None:
            base = folder / entry["folder"]
            chosen = CheckpointSet(entry["step"], {n: base / n for n in entry["files"]}, None, manifest)
            if problems:
                chosen.fallback = f"{problems[0]}; loading step {entry['step']} instead (the previous complete checkpoint)"
                log.warning("%s: %s", folder, chosen.fallback)
            else:
                _warn_stale_top_level(folder, chosen)
            return chosen
        problems.append(problem)
    raise CheckpointError("no complete checkpoint: " + "; ".join(problems or ["checkpoint.json lists none"]),
                          str(folder))


def _warn_stale_top_level(folder: Path, chosen: CheckpointSet) -> None:
    """Warn when a top-level file differs from the set loaded (replaced by hand, or a crash before
    the links were refreshed): dfk loads the set, not the top-level file."""
    for name, inner in chosen.paths.items():
        top = folder / name
        try:
            if not top.exists() or os.path.samefile(top, inner):
                continue
            if top.stat().st_size == inner.stat().st_size and sha256_file(top) == sha256_file(inner):
                continue
        except OSError:
            continue
        log.warning("%s: %s differs from %s of step %d, which is what loads (the top-level file is "
                    "refreshed at the next save; delete %s to load the top-level files instead)",
                    folder, name, inner.relative_to(folder), chosen.step, MANIFEST_FILE)


def _good_entry(folder: Path, manifest: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The newest entry of ``manifest`` whose files are all intact (what a new save keeps as previous)."""
    if manifest is None:
        return None
    for entry in (manifest, manifest.get("previous")):
        if isinstance(entry, dict) and _entry_problem(folder, entry) is None:
            return {k: entry[k] for k in ("step", "folder", "files")}
    return None


def _free_set_dir(folder: Path, step: int) -> Path:
    """``ckpt-<step>``, or ``ckpt-<step>-<n>`` when that name is taken (a second save of one step)."""
    candidate = folder / f"{SET_PREFIX}{step}"
    n = 0
    while candidate.exists():
        n += 1
        candidate = folder / f"{SET_PREFIX}{step}-{n}"
    return candidate


def save_set(model_dir: str | Path, step: int, files: Mapping[str, Writer | Path]) -> CheckpointSet:
    """Save a complete-or-absent set of ``files`` for ``step`` in ``model_dir``.

    Each value writes its file at the path it is given (a function) or is an existing file to
    reuse (hard-linked). The files go into a new ``ckpt-<step>/`` folder, fsynced; then
    ``checkpoint.json`` is replaced atomically (the commit: before it the previous set is the
    checkpoint, after it the new one); then the top-level names are linked to the new files and
    sets other than the new and the previous complete one are removed. On an error before the
    commit the new folder is removed and the previous set stays the checkpoint.
    """
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _read_manifest(folder)
    except CheckpointError as exc:
        log.warning("%s: %s is unreadable (%s); this save starts a new one", folder, MANIFEST_FILE, exc.args[0])
        manifest = None
    previous = _good_entry(folder, manifest)
    set_dir = _free_set_dir(folder, step)
    set_dir.mkdir()
    records: dict[str, dict[str, Any]] = {}
    committed = False
    try:
        for name, writer in files.items():
            _fault(f"before {name}")
            target = set_dir / name
            if isinstance(writer, Path):
                _link_or_copy(writer, target)
            else:
                with atomic_path(target) as tmp:
                    writer(tmp)
            records[name] = {"size": target.stat().st_size, "sha256": sha256_file(target)}
            _fault(f"after {name}")
        fsync_dir(folder)
        entry = {"step": step, "folder": set_dir.name, "files": records}
        _fault(f"before {MANIFEST_FILE}")
        write_json_atomic(folder / MANIFEST_FILE, {"format": 1, **entry, "previous": previous})
        committed = True
        _fault(f"after {MANIFEST_FILE}")
    finally:
        if not committed:
            shutil.rmtree(set_dir, ignore_errors=True)
    for name in records:
        _link_or_copy(set_dir / name, folder / name)
        _fault(f"linked {name}")
    keep = {set_dir.name, previous["folder"] if previous else None}
    for entry_dir in folder.glob(f"{SET_PREFIX}*"):
        if entry_dir.is_dir() and entry_dir.name not in keep:
            shutil.rmtree(entry_dir, ignore_errors=True)
    _fault("cleaned")
    return CheckpointSet(step, {name: set_dir / name for name in records})


# --- a trainer's model folder ---------------------------------------------------------------------

C = TypeVar("C")


@dataclass
class Checkpoint:
    """What a model folder holds: step, weights, optimiser state (None if not asked for or unusable),
    state.json, and why a newer, incomplete set was skipped (None if it was not)."""

    step: int
    model: dict[str, Any]
    training: dict[str, Any] | None
    info: dict[str, Any]
    fallback: str | None = None


def has_model(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a checkpoint (``checkpoint.json`` or a top-level ``model.pt``)."""
    folder = Path(model_dir)
    return (folder / MANIFEST_FILE).is_file() or (folder / MODEL_FILE).is_file()


def save_model(model_dir: str | Path, step: int, model: dict[str, Any], training: dict[str, Any],
               info: dict[str, Any], keep: int) -> None:
    """Write ``model.pt``, ``training.pt`` and ``state.json`` of ``step`` as one checkpoint set and
    rotate the ``model.step<N>.pt`` backups (``keep`` kept; none for step 0)."""
    state = json.dumps({**info, "step": step}, indent=2) + "\n"
    saved = save_set(model_dir, step, {
        TRAINING_FILE: lambda path: torch.save({"step": step, **training}, path),
        MODEL_FILE: lambda path: torch.save({"step": step, **model}, path),
        STATE_FILE: lambda path: path.write_text(state, encoding="utf-8"),
    })
    if step > 0:
        rotate_backups(model_dir, step, keep, source=saved.paths[MODEL_FILE])


def load_model(model_dir: str | Path, missing: str, foreign: str, fits: Callable[[dict[str, Any]], bool],
               training: bool = True) -> Checkpoint:
    """The newest complete checkpoint of ``model_dir`` (its top-level files without ``checkpoint.json``),
    loaded with ``weights_only``. ``CheckpointError`` with ``missing`` when there is no ``model.pt``,
    with ``foreign`` when it has no integer step or ``fits`` refuses it. With ``training``, the
    optimiser state too (None, with a warning, when absent or of another step)."""
    folder = Path(model_dir)
    found = open_set(folder)
    paths = found.paths if found is not None else {n: folder / n for n in (MODEL_FILE, TRAINING_FILE, STATE_FILE)}
    path = paths.get(MODEL_FILE)
    if path is None or not path.is_file():
        raise CheckpointError(missing, str(folder))
    model = load_weights(path)
    if not isinstance(model.get("step"), int) or not fits(model):
        raise CheckpointError(foreign, str(path))
    step = model.pop("step")
    state = paths.get(STATE_FILE)
    info = read_json(state) if state is not None and state.is_file() else {}
    optimiser = _load_training(folder, paths.get(TRAINING_FILE), step) if training else None
    return Checkpoint(step, model, optimiser, info, found.fallback if found is not None else None)


def _load_training(folder: Path, path: Path | None, step: int) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        log.warning("no %s in %s: optimiser state starts afresh", TRAINING_FILE, folder)
        return None
    training = load_weights(path)
    if training.pop("step", None) != step:
        log.warning("%s is not from step %d: optimiser state starts afresh", path, step)
        return None
    return training


def read_model_config(model_dir: str | Path, schema: type[C], missing: str,
                      check: Callable[[C], C] | None = None, unreadable: str = "unreadable config.yaml") -> C:
    """The resolved config saved as ``config.yaml`` (``check`` applied): ``CheckpointError`` with
    ``missing`` when absent, with ``unreadable`` and the first line of the problem when invalid."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        config = from_dict(schema, yaml.safe_load(path.read_text(encoding="utf-8")))
        return check(config) if check is not None else config
    except FileNotFoundError:
        raise CheckpointError(missing, str(path)) from None
    except (yaml.YAMLError, DfkError) as exc:
        raise CheckpointError(f"{unreadable}: {str(exc).splitlines()[0]}", str(path)) from None


def write_model_config(model_dir: str | Path, config: Any) -> None:
    """Save the resolved config as ``config.yaml``."""
    write_text_atomic(Path(model_dir) / CONFIG_FILE, dump_yaml(config))
