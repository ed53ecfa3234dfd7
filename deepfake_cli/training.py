"""What every trainer (train-swap, train-reenact, train-facegan) shares: its run's config, the
summary it returns, and the loss sums it keeps on the device between two ``log.csv`` rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from deepfake_cli.checkpoint import CONFIG_FILE
from deepfake_cli.config import load_config
from deepfake_cli.runtime import all_reduce_sum

C = TypeVar("C")


def run_config(schema: type[C], stage: str, default_preset: str, check: Callable[[C], C], model_dir: str | Path,
               preset: str | None, config_file: str | Path | None, overrides: Sequence[str]) -> C:
    """A run's config: ``preset`` (default ``default_preset``), ``config_file`` and ``overrides``
    merged, then ``check``-ed. Without a preset or file, a model folder that already has a
    ``config.yaml`` resumes with it."""
    saved = Path(model_dir) / CONFIG_FILE
    if preset is None and config_file is None and saved.is_file():
        return check(load_config(schema, stage, None, saved, overrides))
    return check(load_config(schema, stage, preset or default_preset, config_file, overrides))


def loss_text(losses: dict[str, float], digits: int = 4, names: Callable[[str], bool] = lambda name: True) -> str:
    """``name value, ...`` of the ``losses`` whose name passes ``names``."""
    return ", ".join(f"{k} {v:.{digits}f}" for k, v in losses.items() if names(k))


@dataclass
class TrainSummary:
    """The outcome of one training call: the model folder, the steps it went from and to, the
    training seconds and the loss means of the last ``log.csv`` row."""

    model_dir: Path
    start_step: int
    step: int
    seconds: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)

    def head(self) -> str:
        """The steps trained and the time taken."""
        return f"trained steps {self.start_step}->{self.step} in {self.seconds:.1f} s"

    def details(self) -> list[str]:
        """What ``line`` shows after ``head`` (empty parts are left out): every loss, by default."""
        return [loss_text(self.losses)]

    def line(self) -> str:
        """A one-line summary for the terminal."""
        if self.step == self.start_step:
            return f"model already at step {self.step}; nothing to train ({self.model_dir})"
        return "; ".join(part for part in (self.head(), *self.details()) if part) + f"; model: {self.model_dir}"


class LossInterval:
    """Loss sums (on the device, so no step waits for it), steps and step time since the last
    ``log.csv`` row."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.seconds = 0, 0.0

    def add(self, losses: dict[str, torch.Tensor], seconds: float) -> None:
        """Count one step's losses and time."""
        for name, value in losses.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.steps, self.seconds = self.steps + 1, self.seconds + seconds

    def all_reduce(self, names: Sequence[str], flags: Sequence[torch.Tensor]) -> tuple[dict[str, float], list[float]]:
        """The sums of ``names`` this interval has seen and the 0-d ``flags``, each summed over the
        ranks, in one transfer to the host (one all-reduce under torchrun)."""
        zero = torch.zeros((), device=flags[0].device)
        parts = [self.sums[name].float() if name in self.sums else zero for name in names]
        values = all_reduce_sum(torch.stack([*parts, *(flag.float() for flag in flags)])).tolist()
        totals = {name: value for name, value in zip(names, values, strict=False) if name in self.sums}
        return totals, values[len(names):]
