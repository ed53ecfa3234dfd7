"""Detection metrics against hand computations on small known score vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepfake_cli.detect import metrics

# 4 real (0) and 4 fake (1); one fake ties one real at 0.6.
LABELS = [0, 0, 0, 1, 1, 1, 0, 1]
SCORES = [0.1, 0.3, 0.6, 0.4, 0.7, 0.9, 0.2, 0.6]


def test_auc_counts_pairs_with_ties_as_half() -> None:
    # Fake 0.4 beats 3 reals, 0.7 and 0.9 beat all 4, 0.6 beats 3 and ties 1: 14.5 of 16 pairs.
    assert metrics.auc(LABELS, SCORES) == pytest.approx(14.5 / 16)


def test_roc_points_step_through_distinct_scores() -> None:
    curve = metrics.roc_curve(LABELS, SCORES)
    assert curve.fpr.tolist() == pytest.approx([0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    assert curve.tpr.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1, 1, 1])
    assert curve.thresholds[1:].tolist() == [0.9, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]


def test_eer_where_false_positive_and_false_negative_rates_meet() -> None:
    # At threshold 0.6: 1 of 4 reals called fake (FPR .25), 1 of 4 fakes missed (FNR .25).
    rate, threshold = metrics.eer(LABELS, SCORES)
    assert rate == pytest.approx(0.25) and threshold == pytest.approx(0.6)


def test_eer_interpolates_between_roc_points() -> None:
    # ROC (FPR, FNR): at 0.7 -> (.5, 2/3), at 0.5 -> (.5, 1/3); the rates meet halfway, at .5.
    rate, threshold = metrics.eer([0, 1, 1, 0, 1], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert rate == pytest.approx(0.5) and threshold == pytest.approx(0.6)


def test_average_precision_log_loss_and_confusion() -> None:
    # Precision when each fake is reached: 1, 1, 3/4 (tie block of 0.6), 4/5; recall steps of 1/4.
    assert metrics.average_precision(LABELS, SCORES) == pytest.approx(0.25 * (1 + 1 + 0.75 + 0.8))
    expected = -(math.log(0.9) + math.log(0.7) + math.log(0.4) + math.log(0.8)
                 + math.log(0.4) + math.log(0.7) + math.log(0.9) + math.log(0.6)) / 8
    assert metrics.log_loss(LABELS, SCORES) == pytest.approx(expected)
    assert metrics.confusion(LABELS, SCORES, 0.5) == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}


def test_report_holds_every_metric_and_the_threshold() -> None:
    report = metrics.binary_metrics(LABELS, SCORES, 0.5)
    assert report["accuracy"] == pytest.approx(0.75) and report["threshold"] == 0.5
    assert report["auc"] == pytest.approx(0.90625) and report["eer"] == pytest.approx(0.25)
    assert (report["count"], report["real"], report["fake"]) == (8, 4, 4)


def test_perfect_and_inverted_scores() -> None:
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0


def test_one_class_gives_null_ranking_metrics_not_an_error() -> None:
    report = metrics.binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert report["auc"] is None and report["eer"] is None and report["average_precision"] is None
    assert report["accuracy"] == pytest.approx(2 / 3) and report["log_loss"] is not None


def test_auc_matches_brute_force_pair_counting_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 2)  # rounding creates ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.auc(labels, scores) == pytest.approx(pairs / (pos.size * neg.size))


def test_fold_summary_is_mean_and_std() -> None:
    folds = [{"auc": 0.8, "eer": 0.2}, {"auc": 1.0, "eer": None}]
    summary = metrics.summarize_folds(folds)
    assert summary["auc"] == {"mean": pytest.approx(0.9), "std": pytest.approx(0.1), "folds": 2}
    assert summary["eer"]["folds"] == 1 and summary["accuracy"]["mean"] is None


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        metrics.auc([0, 1], [0.5])


def _score_sets() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Random scores, heavily tied scores (few distinct values) and scores rounded to 2 decimals."""
    rng = np.random.default_rng(7)
    sets = [("hand", np.asarray(LABELS), np.asarray(SCORES, dtype=np.float64))]
    for i, n in enumerate((10, 57, 400)):
        labels = rng.integers(0, 2, n)
        labels[:2] = (0, 1)
        sets.append((f"random{n}", labels, rng.random(n)))
        sets.append((f"tied{n}", labels, rng.integers(0, 4 + i, n) / (4.0 + i)))
        sets.append((f"rounded{n}", labels, np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 2)))
    return sets


@pytest.mark.parametrize("name,labels,scores", _score_sets(), ids=[s[0] for s in _score_sets()])
def test_ranking_metrics_match_scikit_learn(name: str, labels: np.ndarray, scores: np.ndarray) -> None:
    """AUC, the ROC points, AP and EER against scikit-learn (a dev dependency), ties included.
    Tolerance 1e-12: both sum the same float64 terms, in a different order at most."""
    sk = pytest.importorskip("sklearn.metrics")
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq

    assert metrics.auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.average_precision(labels, scores) == pytest.approx(
        sk.average_precision_score(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    curve = metrics.roc_curve(labels, scores)
    np.testing.assert_allclose(curve.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(curve.tpr, tpr, atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds[1:], thresholds[1:])
    # EER (scikit-learn has none): the usual recipe on scikit-learn's curve, 1 - TPR = FPR solved
    # on the piecewise-linear ROC; only the rate is compared (the threshold is dfk's own convention)
    rate = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)
    assert metrics.eer(labels, scores)[0] == pytest.approx(rate, abs=1e-9)
