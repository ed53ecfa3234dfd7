"""The dfk exception family.

Every failure a user can cause (bad path, bad config, no face, bad checkpoint) raises a
``DfkError``; the CLI turns it into one line ``error: <what> (<where>)`` and a non-zero exit.
"""

from __future__ import annotations


class DfkError(Exception):
    """Base class of all user-facing dfk errors."""

    exit_code = 1

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message} ({self.where})" if self.where else self.message


class ConfigError(DfkError):
    """A preset, config file or ``--set`` override is invalid."""

    exit_code = 2


class InputError(DfkError):
    """An input path is missing, unreadable or of the wrong kind."""


class NoFaceError(DfkError):
    """No face was found where one was required."""


class CheckpointError(DfkError):
    """A checkpoint is missing, corrupt, unsafe or incompatible."""


class BackendError(DfkError):
    """A face or perceptual backend cannot run (missing weights, missing package)."""


class TrainingError(DfkError):
    """Training cannot continue (e.g. repeated non-finite losses)."""
