"""The model directory of a swap model: weights, optimiser state, config and bookkeeping.

``model.pt`` holds network weights only (``{"step", "generator"[, "discriminators"]}``), so it stays
near the size of the parameters and loads with ``weights_only=True``; ``training.pt`` holds the
optimiser, grad-scaler and random-generator state for resuming. Saving snapshots the tensors and
writes them on a background thread, so training waits only for the copy, never for the disk.

The three files of a step are one checkpoint set (``deepfake_cli.checkpoint.save_set``): a crash
or a full disk mid-save leaves the previous step loadable, and a file that is later truncated or
corrupted is detected by its SHA-256 and the previous step loads instead (with a warning).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from deepfake_cli.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    CheckpointSet,
    cpu_copy,
    load_weights,
    open_set,
    read_json,
    rotate_backups,
    save_set,
    write_text_atomic,
)
from deepfake_cli.config import diff_keys, dump_yaml, from_dict, leaf_keys, to_dict
from deepfake_cli.errors import CheckpointError, ConfigError, DfkError
from deepfake_cli.swap.schema import ARCHITECTURE_KEYS, SwapConfig

log = logging.getLogger(__name__)

TRAINING_FILE = "training.pt"


@dataclass
class Checkpoint:
    """What a model directory holds: step, weights, optimiser state (None if unusable), state.json."""

    step: int
    model: dict[str, Any]
    training: dict[str, Any] | None
    info: dict[str, Any]
    fallback: str | None = None  # why a newer, incomplete checkpoint was skipped (None if it was not)


def check_resumable(saved: SwapConfig, wanted: SwapConfig) -> list[str]:
    """Raise ``ConfigError`` if the architecture differs; return the other keys that changed."""
    old, new = to_dict(saved), to_dict(wanted)
    differing = diff_keys(old, new, ARCHITECTURE_KEYS)
    if differing:
        raise ConfigError("cannot resume: this model was trained with a different architecture ("
                          + "; ".join(differing) + "); use a new model folder or the original settings")
    others = [k for k in leaf_keys(SwapConfig) if k not in ARCHITECTURE_KEYS]
    return diff_keys(old, new, others)


class ModelStore:
    """Reads and (atomically, in the background) writes one model directory."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def has_checkpoint(self) -> bool:
        """Whether a checkpoint exists (``checkpoint.json`` or ``model.pt``; the folder can be resumed)."""
        return (self.folder / MANIFEST_FILE).is_file() or (self.folder / MODEL_FILE).is_file()

    def read_config(self) -> SwapConfig:
        """The resolved config saved beside the weights."""
        path = self.folder / CONFIG_FILE
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return from_dict(SwapConfig, data)
        except FileNotFoundError:
            raise CheckpointError("model folder has weights but no config.yaml", str(path)) from None
        except (yaml.YAMLError, DfkError) as exc:
            raise CheckpointError(f"unreadable config.yaml: {str(exc).splitlines()[0]}", str(path)) from None

    def write_config(self, config: SwapConfig) -> None:
        """Save the resolved config as ``config.yaml``."""
        write_text_atomic(self.folder / CONFIG_FILE, dump_yaml(config))

    def load(self) -> Checkpoint:
        """Load weights (``weights_only``), optimiser state and ``state.json`` of the newest complete set."""
        self.wait()
        found = open_set(self.folder)
        checkpoint = self._load_model(found)
        checkpoint.training = self._load_training(checkpoint.step, found)
        return checkpoint

    def load_model(self) -> Checkpoint:
        """Load weights (``weights_only``) and ``state.json`` only, without optimiser state."""
        self.wait()
        return self._load_model(open_set(self.folder))

    def _load_model(self, found: CheckpointSet | None) -> Checkpoint:
        path = found.paths[MODEL_FILE] if found else self.folder / MODEL_FILE
        if not path.is_file():
            raise CheckpointError("no trained swap model here (model.pt missing); train one with dfk train-swap",
                                  str(self.folder))
        model = load_weights(path)
        if not isinstance(model.get("step"), int) or "generator" not in model:
            raise CheckpointError("not a dfk swap checkpoint (no step or generator)", str(path))
        step = model.pop("step")
        state = found.paths[STATE_FILE] if found else self.folder / STATE_FILE
        info = read_json(state) if state.is_file() else {}
        return Checkpoint(step, model, None, info, found.fallback if found else None)

    def _load_training(self, step: int, found: CheckpointSet | None) -> dict[str, Any] | None:
        path = found.paths[TRAINING_FILE] if found else self.folder / TRAINING_FILE
        if not path.is_file():
            log.warning("no %s in %s: optimiser state starts afresh", TRAINING_FILE, self.folder)
            return None
        training = load_weights(path)
        if training.pop("step", None) != step:
            log.warning("%s is not from step %d: optimiser state starts afresh", path, step)
            return None
        return training

    def save(self, step: int, model: dict[str, Any], training: dict[str, Any], info: dict[str, Any],
             keep: int, background: bool = True) -> None:
        """Write a checkpoint of ``step``; with ``background`` only the tensor copy blocks."""
        self.wait()
        job = (step, cpu_copy(model), cpu_copy(training), dict(info), keep)
        if not background:
            self._write(*job)
            return
        self._thread = threading.Thread(target=self._write_catching, args=job, name="dfk-save")
        self._thread.start()

    def wait(self) -> None:
        """Block until a background save is done; re-raise its failure as ``CheckpointError``."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(f"saving the checkpoint failed: {error}", str(self.folder))

    def _write_catching(self, *job: Any) -> None:
        try:
            self._write(*job)
        except Exception as exc:  # reported by wait() on the training thread
            self._error = exc

    def _write(self, step: int, model: dict[str, Any], training: dict[str, Any], info: dict[str, Any],
               keep: int) -> None:
        state = json.dumps({**info, "step": step}, indent=2) + "\n"
        saved = save_set(self.folder, step, {
            TRAINING_FILE: lambda path: torch.save({"step": step, **training}, path),
            MODEL_FILE: lambda path: torch.save({"step": step, **model}, path),
            STATE_FILE: lambda path: path.write_text(state, encoding="utf-8"),
        })
        if step > 0:
            rotate_backups(self.folder, step, keep, source=saved.paths[MODEL_FILE])
