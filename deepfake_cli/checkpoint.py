"""Safe checkpoints: atomic writes, ``weights_only`` loading, backup rotation.

A model directory holds ``model.pt`` (tensors and plain containers only), ``config.yaml`` (the
resolved config), ``state.json`` (step and bookkeeping) and the last K backups
``model.step<N>.pt``. Every file is written to a temporary name and renamed, so a crash never
leaves a torn checkpoint.
"""

from __future__ import annotations

import json
import os
import errno
import pickle
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from deepfake_cli.errors import CheckpointError

MODEL_FILE = "model.pt"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
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


def rotate_backups(model_dir: str | Path, step: int, keep: int) -> None:
    """Hard-link (or copy) ``model.pt`` to ``model.step<step>.pt`` and keep the newest ``keep``."""
    folder = Path(model_dir)
    if keep <= 0:
        return
    source = folder / MODEL_FILE
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
