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


@dataclass(frozen=True)
class FprThreshold:
    """A threshold chosen for a false-positive rate: where it is, and what it gives on the reals it
    was chosen on (``flagged`` of ``reals`` score at or above it; ``reached`` = flagged / reals)."""

    threshold: float
    target: float
    reached: float
    reals: int
    flagged: int


JUST_ABOVE = 1e-4  # how far above the highest score the threshold goes when no score lies above it
_CLIP = 1e-6  # thresholds stay within [1e-6, 1 - 1e-6]


def fpr_threshold(real_scores: Values, target: float, other_scores: Values = ()) -> FprThreshold:
    """The threshold that keeps the false-positive rate of ``real_scores`` at or below ``target``
    (score >= threshold means fake), deterministic and placed in a gap of the scores.

    With n real scores at most k = floor(target * n) of them may be called fake. Sorted from the
    highest, the (k+1)-th real score s must be called real, so the threshold must lie above s and
    every threshold just above s calls exactly the reals above s fake (ties at s included: they stay
    real, so fewer than k may be flagged). The smallest such threshold is not attained, so the
    threshold goes to the middle of the gap above s: midway between s and the next higher distinct
    score, real or one of ``other_scores`` (the validation fakes, when there are any; they move
    the threshold within the gap, never past a real). When no score lies above s (k = 0 and s is
    the highest score), it goes just above s (by ``JUST_ABOVE``, or midway to 1 when that is
    closer). The threshold is clipped to [1e-6, 1 - 1e-6]; only a real scoring 1 - 1e-6 or more can
    then still be flagged at k = 0, and ``reached`` says so. ``target`` must be in (0, 1); with
    fewer than 1 / target reals, k = 0: no real of these may be flagged.
    """
    reals = np.asarray(real_scores, dtype=np.float64).ravel()
    others = np.asarray(other_scores, dtype=np.float64).ravel()
    if not 0.0 < target < 1.0:
        raise ValueError(f"the false-positive target must be in (0, 1), got {target}")
    if not reals.size:
        raise ValueError("a false-positive threshold needs real scores")
    allowed = math.floor(target * reals.size + 1e-9)
    highest_real = np.sort(reals)[::-1][allowed]  # the (k+1)-th highest: must be called real
    every = np.concatenate([reals, others])
    above = every[every > highest_real]
    if above.size:
        threshold = (highest_real + float(above.min())) / 2
    else:
        threshold = min(highest_real + JUST_ABOVE, (highest_real + 1.0) / 2)
    threshold = float(min(max(threshold, _CLIP), 1.0 - _CLIP))
    flagged = int(np.sum(reals >= threshold))
    return FprThreshold(threshold=threshold, target=float(target), reached=flagged / reals.size,
                        reals=int(reals.size), flagged=flagged)


def fpr_provenance(where: str, chosen: FprThreshold) -> str:
    """How an fpr threshold was chosen, as recorded in ``threshold_from``:
    ``val fpr<=0.05 (fpr reached 0.0 on 12 real videos)``."""
    return f"{where} fpr<={chosen.target:g} (fpr reached {chosen.reached:.4g} on {chosen.reals} real videos)"


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
