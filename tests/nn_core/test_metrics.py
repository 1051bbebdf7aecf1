"""Metrics against their definitions: pairwise AUC with ties, AP by hand, and friends."""

import itertools
import math

import numpy as np
import pytest

from nn_core import metrics


def pairwise_auc(y, p):
    """AUC by its definition: P(pos > neg) + 0.5 P(pos == neg) over all pairs."""
    pos = [s for s, t in zip(p, y, strict=True) if t == 1]
    neg = [s for s, t in zip(p, y, strict=True) if t == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def definitional_ap(y, p):
    """AP by looping over distinct thresholds in descending order."""
    y, p = np.asarray(y), np.asarray(p)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(p.tolist()), reverse=True):
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        precision, recall = tp / pred.sum(), tp / y.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def test_roc_auc_hand_examples():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # One tied pos/neg pair counts one half: (0.5 + 1 + 1 + 1) / 4.
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert metrics.roc_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_pairwise_count_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = (0, 1)
    p = rng.integers(0, 6, 60) / 5.0  # only 6 distinct scores: ties everywhere
    assert metrics.roc_auc(y, p) == pytest.approx(pairwise_auc(y, p), abs=1e-12)


def test_roc_curve_ends_and_tie_groups():
    fpr, tpr, thr = metrics.roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert thr[0] == np.inf
    np.testing.assert_allclose(thr[1:], [0.9, 0.5, 0.2])
    # Trapezoid area of the tie-grouped curve equals the rank-based AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.875)


def test_pr_auc_hand_example():
    # thresholds 0.9, 0.8, 0.7, 0.1 -> (P, R) = (1, .5), (.5, .5), (2/3, 1), (.5, 1)
    ap = metrics.pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_pr_auc_matches_definition_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 50)
    y[:2] = (0, 1)
    p = rng.integers(0, 8, 50) / 7.0
    assert metrics.pr_auc(y, p) == pytest.approx(definitional_ap(y, p), abs=1e-12)


def test_log_loss_and_brier_by_hand():
    y, p = [1, 0, 1], [0.8, 0.3, 0.5]
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.5)) / 3
    assert metrics.log_loss(y, p) == pytest.approx(expected)
    assert metrics.brier(y, p) == pytest.approx((0.2**2 + 0.3**2 + 0.5**2) / 3)
    # Clipping keeps a certain mistake finite.
    assert math.isfinite(metrics.log_loss([1], [0.0]))
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_classification_at_threshold_by_hand():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.9, 0.4, 0.6, 0.1, 0.7, 0.5]
    # p >= 0.5 -> predicted [1, 0, 1, 0, 1, 1]: TP 2, FP 2, FN 1, TN 1
    out = metrics.classification_at(y, p, 0.5)
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["precision"] == pytest.approx(2 / 4)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    nothing = metrics.classification_at(y, p, 0.95)
    assert nothing["precision"] == 0.0 and nothing["recall"] == 0.0 and nothing["f1"] == 0.0


def test_best_f1_threshold_is_the_brute_force_maximiser():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    p = np.round(rng.random(80) * 0.6 + 0.3 * y, 2)
    t = metrics.best_f1_threshold(y, p)
    best = max(metrics.classification_at(y, p, s)["f1"] for s in np.unique(p))
    assert metrics.classification_at(y, p, t)["f1"] == pytest.approx(best)
    assert t in set(p.tolist())


def test_gains_and_lift_by_hand():
    # 10 rows, 2 positives; the top 10 % (1 row) holds one of them.
    y = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert metrics.gains_at(y, p, 0.10) == pytest.approx(0.5)
    assert metrics.lift_at(y, p, 0.10) == pytest.approx(5.0)
    assert metrics.gains_at(y, p, 0.20) == pytest.approx(0.5)
    assert metrics.gains_at(y, p, 0.40) == pytest.approx(1.0)
    assert metrics.lift_at(y, p, 0.20) == pytest.approx(2.5)


def test_gains_with_all_scores_tied_is_random_targeting():
    y = [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    for f in (0.05, 0.1, 0.2, 0.5):
        assert metrics.gains_at(y, [0.3] * 10, f) == pytest.approx(f)
        assert metrics.lift_at(y, [0.3] * 10, f) == pytest.approx(1.0)


def test_reliability_and_ece_by_hand():
    y = [0, 1, 1, 1]
    p = [0.1, 0.15, 0.8, 0.9]
    mean_p, rate, counts = metrics.reliability_curve(y, p, n_bins=10)
    # bins: [0.1, 0.2) holds 0.1 and 0.15; [0.8, 0.9) holds 0.8; [0.9, 1] holds 0.9
    np.testing.assert_allclose(mean_p, [0.125, 0.8, 0.9])
    np.testing.assert_allclose(rate, [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(counts, [2, 1, 1])
    expected = (2 * abs(0.5 - 0.125) + 1 * 0.2 + 1 * 0.1) / 4
    assert metrics.expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected)
    assert metrics.expected_calibration_error([0, 1], [0.0, 1.0]) == pytest.approx(0.0)


def test_evaluate_has_the_report_keys():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.random(200) * 0.5 + 0.4 * y, 0, 1)
    out = metrics.evaluate(y, p, threshold=0.45)
    required = {"roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall",
                "f1", "threshold", "lift_at_10", "ece"}
    assert required <= set(out)
    assert out["threshold"] == 0.45
    assert out["roc_auc"] == pytest.approx(pairwise_auc(y, p))
    assert out["f1_at_0.5"] == pytest.approx(metrics.classification_at(y, p, 0.5)["f1"])
    assert out["lift_at_10"] == pytest.approx(out["gains_at_10"] / 0.1)


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "both classes"),
        ([0, 1], [0.5], "differ in length"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, float("nan")], "finite"),
        ([], [], "at least one"),
    ],
)
def test_bad_input_is_refused(y, p, match):
    with pytest.raises(ValueError, match=match):
        metrics.roc_auc(y, p)
