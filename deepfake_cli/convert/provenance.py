"""The provenance sentence of converted media (the labels themselves: ``deepfake_cli.media.provenance``)."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli import __version__


def provenance_text(model_dir: str | Path, direction: str) -> str:
    """The one-sentence provenance statement written into converted media."""
    return (f"Synthetic media (deepfake): faces swapped by dfk {__version__} "
            f"with model '{Path(model_dir).name}' ({direction}).")
