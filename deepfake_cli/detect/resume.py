"""Resuming ``train-detect``: the run record, the per-epoch resume checkpoint and random states.

Running ``dfk train-detect`` again with the same output folder resumes the run there:

- ``run.json`` (top level) records what the run is: the resolved config (less the keys that do not
  change the numbers: ``IGNORED_KEYS``), the seed, ``--folds`` and a digest of the labelled inputs,
  and its ``status`` (``training``, then ``done`` once ``metrics.json`` is final). The same command
  on a folder whose run is ``done`` trains nothing and reports it; a folder whose ``run.json``
  differs is refused in one line naming the differences. A folder without ``run.json`` (a detector
  written before resuming existed) trains afresh, as it always did.
- ``resume/`` (``fold<k>/resume/`` per fold) is a checkpoint set (``checkpoint.save_set``) written
  after every epoch: ``training.pt`` (current weights, optimiser, grad scaler, the best epoch's
  weights and validation scores, every rank's random states) and ``progress.json`` (the epoch,
  the ``log.csv`` rows, early-stopping state, learning-rate scale and rollbacks). A run killed at
  any point restarts from its last complete epoch and, on the same number of ranks, computes
  exactly what the uninterrupted run would have.

Under torchrun every rank reads the checkpoint itself; the ranks then compare what they read
(``same_on_every_rank``) and stop together with one error if they differ: every rank must see
the output folder on a shared filesystem.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_cli.checkpoint import load_weights, open_set, read_json, save_set, write_json_atomic
from deepfake_cli.config import to_dict, tree_differences
from deepfake_cli.detect.config import DetectConfig
from deepfake_cli.detect.layouts import LabelledInput
from deepfake_cli.errors import CheckpointError, InputError

RUN_FILE = "run.json"
RESUME_DIR = "resume"
TRAINING_FILE = "training.pt"
PROGRESS_FILE = "progress.json"
# Settings that change neither the numbers nor the data: a run resumes with other values of these.
IGNORED_KEYS = ("train.workers", "train.log_every", "train.cache_frames", "train.dist_timeout",
                "train.max_rollbacks")


def run_record(items: list[LabelledInput], config: DetectConfig, seed: int, folds: int) -> dict[str, Any]:
    """What identifies a training run: config (less ``IGNORED_KEYS``), seed, folds and inputs."""
    settings = to_dict(config)
    for dotted in IGNORED_KEYS:
        section, key = dotted.split(".")
        settings.get(section, {}).pop(key, None)
    listed = [[str(Path(i.path).resolve()), i.label, i.group, i.split, i.method, *([i.family] if i.family else [])]
              for i in items]  # the family only where named: runs from before families still resume
    digest = hashlib.sha256(json.dumps(listed).encode()).hexdigest()
    return {"config": settings, "seed": seed, "folds": folds, "inputs": {"count": len(items), "sha256": digest}}


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings of ``wanted`` that differ from ``saved`` (dotted config keys, seed, folds, inputs)."""
    found = tree_differences(saved.get("config", {}), wanted["config"])
    for key in ("seed", "folds"):
        if saved.get(key) != wanted[key]:
            found.append(f"{key} {saved.get(key)!r} -> {wanted[key]!r}")
    if saved.get("inputs") != wanted["inputs"]:
        before = (saved.get("inputs") or {}).get("count")
        found.append(f"inputs ({before} -> {wanted['inputs']['count']}, or other paths/labels/groups)")
    return found


def claim(folder: Path, record: dict[str, Any]) -> tuple[str, str]:
    """Rank 0: decide what the run in ``folder`` is and stamp ``run.json`` with a new session token.

    Returns ``(status, token)``: ``new`` (stale resume checkpoints removed), ``training`` (resume)
    or ``done``. Raises ``InputError`` when ``folder`` holds a run of other settings.
    """
    path = folder / RUN_FILE
    status = "new"
    if path.is_file():
        try:
            saved = read_json(path)
        except CheckpointError as exc:
            raise InputError(f"{RUN_FILE} is unreadable ({exc.message}); delete it to train afresh in this folder",
                             str(path)) from None
        changed = differences(saved, record)
        if changed:
            raise InputError(f"{folder} holds a training run with other settings ({'; '.join(changed[:4])}"
                             f"{'; ...' if len(changed) > 4 else ''}); give another output folder, or the same "
                             "settings to resume it", str(path))
        status = "done" if saved.get("status") == "done" else "training"
    if status == "new":
        for stale in [folder / RESUME_DIR, *folder.glob(f"fold*/{RESUME_DIR}")]:
            shutil.rmtree(stale, ignore_errors=True)
    token = secrets.token_hex(8)
    if status != "done":
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record | {"status": "training", "session": token})
    else:
        token = str(read_json(path).get("session", ""))
    return status, token


def mark_done(folder: Path) -> None:
    """Rank 0, after the final ``metrics.json``: the run in ``folder`` is finished; its resume
    checkpoints are no longer needed and are removed."""
    path = folder / RUN_FILE
    write_json_atomic(path, read_json(path) | {"status": "done"})
    for stale in [folder / RESUME_DIR, *folder.glob(f"fold*/{RESUME_DIR}")]:
        shutil.rmtree(stale, ignore_errors=True)


def session_seen(folder: Path) -> str | None:
    """The session token of ``folder``'s ``run.json`` as this rank sees it (None if unreadable)."""
    try:
        return str(read_json(folder / RUN_FILE).get("session"))
    except CheckpointError:
        return None


# --- random states --------------------------------------------------------------------------------


def global_rng_state(device: torch.device) -> dict[str, Any]:
    """torch's (and the CUDA device's), NumPy's and Python's global random states, as plain
    tensors and numbers (loadable with ``weights_only``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what ``global_rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    saved = state["numpy"]
    np.random.set_state(("MT19937", saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                         saved["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))


# --- the resume checkpoint --------------------------------------------------------------------------


def save_resume(folder: Path, epoch: int, training: dict[str, Any], progress: dict[str, Any]) -> None:
    """Write the resume checkpoint of ``epoch`` into ``folder/resume`` as one checkpoint set."""
    text = json.dumps(progress | {"epoch": epoch}, indent=2) + "\n"
    save_set(folder / RESUME_DIR, epoch, {
        TRAINING_FILE: lambda path: torch.save(training | {"epoch": epoch}, path),
        PROGRESS_FILE: lambda path: path.write_text(text, encoding="utf-8"),
    })


def load_resume(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest complete resume checkpoint of ``folder`` (``training.pt`` and ``progress.json``
    contents), or None when there is none."""
    found = open_set(folder / RESUME_DIR) if (folder / RESUME_DIR).is_dir() else None
    if found is None:
        return None
    training = load_weights(found.paths[TRAINING_FILE])
    progress = read_json(found.paths[PROGRESS_FILE])
    if training.get("epoch") != progress.get("epoch") or progress.get("epoch") != found.step:
        raise CheckpointError("training.pt and progress.json are of different epochs", str(folder / RESUME_DIR))
    return training, progress


def resume_view(folder: Path) -> tuple[int, str] | None:
    """What this rank sees of ``folder``'s resume checkpoint: its epoch and the SHA-256 of its
    manifest (None without one); compared over the ranks before resuming."""
    manifest = folder / RESUME_DIR / "checkpoint.json"
    if not manifest.is_file():
        return None
    try:
        step = int(read_json(manifest).get("step", -1))
    except CheckpointError:
        step = -1
    return step, hashlib.sha256(manifest.read_bytes()).hexdigest()
