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

import threading
from pathlib import Path
from typing import Any

from deepfake_cli.checkpoint import (
    TRAINING_FILE,
    Checkpoint,
    cpu_copy,
    has_model,
    load_model,
    read_model_config,
    save_model,
    write_model_config,
)
from deepfake_cli.config import diff_keys, leaf_keys, to_dict
from deepfake_cli.errors import CheckpointError, ConfigError
from deepfake_cli.swap.schema import ARCHITECTURE_KEYS, SwapConfig

__all__ = ["TRAINING_FILE", "Checkpoint", "ModelStore", "check_resumable"]

NO_MODEL = "no trained swap model here (model.pt missing); train one with dfk train-swap"
NOT_SWAP = "not a dfk swap checkpoint (no step or generator)"


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
        return has_model(self.folder)

    def read_config(self) -> SwapConfig:
        """The resolved config saved beside the weights."""
        return read_model_config(self.folder, SwapConfig, "model folder has weights but no config.yaml")

    def write_config(self, config: SwapConfig) -> None:
        """Save the resolved config as ``config.yaml``."""
        write_model_config(self.folder, config)

    def load(self) -> Checkpoint:
        """Load weights (``weights_only``), optimiser state and ``state.json`` of the newest complete set."""
        self.wait()
        return load_model(self.folder, NO_MODEL, NOT_SWAP, _is_swap)

    def load_model(self) -> Checkpoint:
        """Load weights (``weights_only``) and ``state.json`` only, without optimiser state."""
        self.wait()
        return load_model(self.folder, NO_MODEL, NOT_SWAP, _is_swap, training=False)

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
        save_model(self.folder, step, model, training, info, keep)


def _is_swap(model: dict[str, Any]) -> bool:
    return "generator" in model
