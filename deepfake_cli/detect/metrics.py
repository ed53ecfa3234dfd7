"""Every detection metric dfk reports, computed in one place with NumPy only.

Convention: label 1 = fake (the positive class), 0 = real; scores are probabilities of fake.
AUC, EER and AP need both classes; with only one class present they are ``None`` (JSON null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_EPS = 1e-7
Values = Sequence[float] | np.ndarray  # labels (0/1) or scores, any 1-D sequence


@dataclass(frozen=True)
class RocCurve:
    """ROC points for decreasing thresholds, starting at (0, 0) and ending at (1, 1)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _arrays(labels: Values, scores: Values) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def roc_curve(labels: Values, scores: Values) -> RocCurve:
    """ROC curve with one point per distinct score (tied scores move together)."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        raise ValueError("a ROC curve needs both real and fake samples")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def auc(labels: Values, scores: Values) -> float | None:
    """Area under the ROC curve: P(score of a fake > score of a real), ties counting half."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return None
    curve = roc_curve(y, s)
    return float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2.0))


def eer(labels: Values, scores: Values) -> tuple[float, float] | None:
    """Equal error rate and the threshold where it occurs, interpolating the ROC linearly.

    The EER is where the false-positive rate equals the false-negative rate (1 - TPR).
    """
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return None
    curve = roc_curve(y, s)
    gap = (1.0 - curve.tpr) - curve.fpr  # FNR - FPR: starts at 1, ends at -1, never increases
    i = int(np.nonzero(gap <= 0)[0][0])
    if gap[i] == 0:
        return float(curve.fpr[i]), float(min(curve.thresholds[i], 1.0))
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = curve.fpr[i - 1] + t * (curve.fpr[i] - curve.fpr[i - 1])
    upper = min(float(curve.thresholds[i - 1]), 1.0)
    threshold = upper + t * (float(curve.thresholds[i]) - upper)
    return float(rate), float(threshold)


def average_precision(labels: Values, scores: Values) -> float | None:
    """Average precision: the sum of precision at each threshold times the recall gained there."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(precision * recall_gain))


def log_loss(labels: Values, scores: Values) -> float | None:
    """Mean binary cross-entropy in nats, probabilities clipped to [1e-7, 1 - 1e-7]."""
    y, s = _arrays(labels, scores)
    if not y.size:
        return None
    p = np.clip(s, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1.0 - p)))


def confusion(labels: Values, scores: Values, threshold: float) -> dict[str, int]:
    """Counts at ``threshold`` (score >= threshold means fake): tn, fp, fn, tp."""
    y, s = _arrays(labels, scores)
    predicted = s >= threshold
    return {
        "tn": int(np.sum(~predicted & (y == 0))),
        "fp": int(np.sum(predicted & (y == 0))),
        "fn": int(np.sum(~predicted & (y == 1))),
        "tp": int(np.sum(predicted & (y == 1))),
    }


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def binary_metrics(labels: Values, scores: Values, threshold: float) -> dict[str, Any]:
    """The full report for one level (video or sequence): counts, accuracy, AUC, EER, AP, log loss."""
    y, s = _arrays(labels, scores)
    counts = confusion(y, s, threshold)
    equal_error = eer(y, s)
    return {
        "count": int(y.size),
        "real": int(np.sum(y == 0)),
        "fake": int(np.sum(y == 1)),
        "threshold": threshold,
        "accuracy": _rounded((counts["tp"] + counts["tn"]) / y.size if y.size else None),
        "auc": _rounded(auc(y, s)),
        "eer": _rounded(equal_error[0] if equal_error else None),
        "eer_threshold": _rounded(equal_error[1] if equal_error else None),
        "average_precision": _rounded(average_precision(y, s)),
        "log_loss": _rounded(log_loss(y, s)),
        "confusion": counts,
    }


def summarize_folds(reports: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean and (population) standard deviation over folds of every numeric top-level metric."""
    keys = ("accuracy", "auc", "eer", "average_precision", "log_loss")
    summary: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        values = [r[key] for r in reports if r.get(key) is not None]
        if not values:
            summary[key] = {"mean": None, "std": None, "folds": 0}
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        summary[key] = {"mean": round(mean, 6), "std": round(std, 6), "folds": len(values)}
    return summary
