"""ROC and training-curve figures (PNG, written atomically; matplotlib's object API, no pyplot
state and no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.detect.metrics import Values, auc, roc_curve


def _save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_roc(path: Path, curves: dict[str, tuple[Values, Values]], title: str = "ROC") -> bool:
    """ROC curves, one per ``name -> (labels, scores)``; curves lacking a class are left out.

    Returns False (and writes nothing) when no curve can be drawn.
    """
    figure = Figure(figsize=(4.8, 4.4))
    axes = figure.subplots()
    drawn = False
    for name, (labels, scores) in curves.items():
        area = auc(labels, scores)
        if area is None:
            continue
        curve = roc_curve(labels, scores)
        axes.plot(curve.fpr, curve.tpr, label=f"{name} (AUC {area:.3f})")
        drawn = True
    if not drawn:
        return False
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fakes caught)",
             title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    _save(figure, path)
    return True


def plot_history(path: Path, history: list[dict[str, Any]], best_epoch: int) -> None:
    """Training and validation loss, and validation AUC, per epoch; the kept epoch is marked."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(6.4, 4.0))
    loss_axes = figure.subplots()
    loss_axes.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    loss_axes.plot(epochs, [row["val_loss"] for row in history], label="val loss")
    loss_axes.set(xlabel="epoch", ylabel="log loss")
    auc_axes = loss_axes.twinx()
    for key, style in (("val_sequence_auc", "--"), ("val_video_auc", ":")):
        values = [row[key] if row[key] is not None else float("nan") for row in history]
        auc_axes.plot(epochs, values, linestyle=style, color="black", label=key.replace("_", " "))
    auc_axes.set(ylabel="AUC", ylim=(0, 1.02))
    loss_axes.axvline(best_epoch, color="red", linewidth=0.8, alpha=0.6)
    handles = loss_axes.get_legend_handles_labels()[0] + auc_axes.get_legend_handles_labels()[0]
    loss_axes.legend(handles=handles, loc="center right", fontsize=8)
    loss_axes.set_title(f"training (kept epoch {best_epoch})")
    _save(figure, path)
