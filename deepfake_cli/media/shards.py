"""Splitting a batch job's input list into N shards, e.g. one per task of a SLURM job array.

Shard ``K/N`` (K in 1..N) takes every item whose 0-based index ``i`` in the list satisfies
``i % N == K - 1``. Callers pass a list in a stable (sorted) order, so the N shards are disjoint,
together hold every item, and each task computes the same split on its own without talking to the
others. ``auto/N`` reads K from ``SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from deepfake_cli.errors import ConfigError

T = TypeVar("T")

SLURM_TASK_VARIABLE = "SLURM_ARRAY_TASK_ID"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"--shard K/N needs N >= 1; got {self.label}")
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"--shard K/N needs K in 1..{self.count}; got {self.label}")

    @property
    def label(self) -> str:
        """``K/N``, as given on the command line."""
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """``shard-K-of-N``, for file names."""
        return f"shard-{self.index}-of-{self.count}"

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every ``count``-th one from index ``index - 1``, in the order given."""
        return list(items[self.index - 1::self.count])


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """Parse ``K/N`` or ``auto/N`` (K from ``SLURM_ARRAY_TASK_ID``); a bad value is a ``ConfigError``."""
    environ = os.environ if environ is None else environ
    index_text, sep, count_text = text.strip().partition("/")
    count = _integer(count_text) if sep else None
    if count is None or count < 1:
        raise ConfigError(f"--shard must be K/N or auto/N with whole numbers N >= 1 and K in 1..N; got {text!r}")
    if index_text.strip().lower() == "auto":
        task = environ.get(SLURM_TASK_VARIABLE)
        if task is None or not task.strip():
            raise ConfigError(f"--shard auto/{count} reads K from {SLURM_TASK_VARIABLE}, which is not set "
                              "(run it as a SLURM array task, or give K/N)")
        index = _integer(task)
        if index is None or not 1 <= index <= count:
            raise ConfigError(f"--shard auto/{count} needs {SLURM_TASK_VARIABLE} in 1..{count}; got {task.strip()!r} "
                              f"(submit the array as --array=1-{count})")
        return Shard(index, count)
    index = _integer(index_text)
    if index is None or not 1 <= index <= count:
        raise ConfigError(f"--shard K/N needs K in 1..{count}; got {text!r}")
    return Shard(index, count)


def _integer(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None
