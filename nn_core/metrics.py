"""Binary-classification metrics for propensity scores, written from their definitions.

Notation: ``y`` is the 0/1 label vector of length ``n`` with ``n1`` positives and ``n0``
negatives; ``p`` are scores (probabilities for the calibration metrics). Ties in ``p`` are
treated symmetrically everywhere: tied rows are never ordered by their position.
"""

from __future__ import annotations

import numpy as np

#: Top fractions of the population for cumulative gains and lift.
GAIN_FRACTIONS = (0.05, 0.10, 0.20)


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    """Return ``y`` as int8 and ``p`` as float64 1-D arrays after checking them."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y and p must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"y and p differ in length: {len(y)} vs {len(p)}")
    if len(y) == 0:
        raise ValueError("metrics need at least one example")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must contain only 0 and 1")
    if not np.isfinite(p).all():
        raise ValueError("scores p must be finite")
    return y.astype(np.int8), p


def _need_both_classes(y: np.ndarray, name: str) -> tuple[int, int]:
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"{name} needs both classes in y (got {n1} positives, {n0} negatives)")
    return n1, n0


def average_ranks(p: np.ndarray) -> np.ndarray:
    """1-based ranks of ``p`` in ascending order, tied values sharing their mean rank."""
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each tie group
    return (last - (counts - 1) / 2.0)[inverse]


def roc_auc(y, p) -> float:
    """Area under the ROC curve.

    ``AUC = P(p_pos > p_neg) + 0.5 * P(p_pos == p_neg)`` over all positive/negative pairs,
    computed with the Mann-Whitney rank sum: ``(R1 - n1 (n1 + 1) / 2) / (n1 n0)`` where
    ``R1`` is the sum of the (tie-averaged) ranks of the positives.
    """
    y, p = _check(y, p)
    n1, n0 = _need_both_classes(y, "ROC-AUC")
    r1 = float(average_ranks(p)[y == 1].sum())
    return (r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def _descending_groups(y: np.ndarray, p: np.ndarray):
    """Distinct scores in descending order with cumulative TP and FP counts at each.

    Returns ``thresholds`` (k,), ``tp`` (k,), ``fp`` (k,): predicting positive for
    ``p >= thresholds[j]`` yields ``tp[j]`` true and ``fp[j]`` false positives.
    """
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]
    tp = np.cumsum(ys)[last_of_group].astype(np.float64)
    fp = (last_of_group + 1) - tp
    return ps[last_of_group], tp, fp


def roc_curve(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold +inf."""
    y, p = _check(y, p)
    n1, n0 = _need_both_classes(y, "ROC curve")
    thr, tp, fp = _descending_groups(y, p)
    return np.r_[0.0, fp / n0], np.r_[0.0, tp / n1], np.r_[np.inf, thr]


def precision_recall_curve(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall for ``p >= t`` at each distinct score ``t`` (descending)."""
    y, p = _check(y, p)
    n1, _ = _need_both_classes(y, "PR curve")
    thr, tp, fp = _descending_groups(y, p)
    return tp / (tp + fp), tp / n1, thr


def pr_auc(y, p) -> float:
    """Average precision: ``AP = sum_j (R_j - R_{j-1}) P_j`` over distinct thresholds.

    ``P_j``, ``R_j`` are precision and recall when predicting positive for ``p >= t_j``
    (``t_1 > t_2 > ...``, ``R_0 = 0``); a tie group enters as one step.
    """
    precision, recall, _ = precision_recall_curve(y, p)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y, p, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy ``-(1/n) sum y log p + (1 - y) log(1 - p)``, p clipped to
    ``[eps, 1 - eps]`` so a confident mistake costs a large but finite amount."""
    y, p = _check(y, p)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y, p) -> float:
    """Brier score ``(1/n) sum (p - y)^2``."""
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2))


def classification_at(y, p, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 when predicting positive for ``p >= threshold``.

    Precision is 0 when nothing is predicted positive, recall 0 when there are no positives,
    and F1 = 2 P R / (P + R) is 0 when P + R = 0.
    """
    y, p = _check(y, p)
    pred = p >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    tn = float(len(y) - tp - fp - fn)
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def best_f1_threshold(y, p) -> float:
    """The score ``t`` maximising F1 of the rule ``p >= t`` (tune it on dev, never on test).

    Candidates are the distinct scores; among equal F1 values the highest threshold wins.
    """
    precision, recall, thr = precision_recall_curve(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thr[int(np.argmax(f1))])  # argmax takes the first = highest threshold


def cumulative_gains_curve(y, p) -> tuple[np.ndarray, np.ndarray]:
    """Share of the population targeted (x) against share of positives captured (y).

    Points sit at the ends of tie groups, starting at (0, 0); between them the curve is
    linear, which is the expected gain when tied rows are targeted in random order.
    """
    y, p = _check(y, p)
    n1, _ = _need_both_classes(y, "cumulative gains")
    _, tp, fp = _descending_groups(y, p)
    return np.r_[0.0, (tp + fp) / len(y)], np.r_[0.0, tp / n1]


def gains_at(y, p, fraction: float) -> float:
    """Share of all positives among the top ``fraction`` of rows by score.

    Rows tied at the cut-off count in proportion (linear interpolation of the gains curve).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    x, g = cumulative_gains_curve(y, p)
    return float(np.interp(fraction, x, g))


def lift_at(y, p, fraction: float) -> float:
    """Lift at the top ``fraction``: ``gains_at / fraction`` (1 = no better than random)."""
    return gains_at(y, p, fraction) / fraction


def reliability_curve(y, p, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of ``p`` on [0, 1]: mean score, observed positive rate, count.

    Empty bins are dropped. Bin ``b`` holds ``b/B <= p < (b+1)/B`` (the last bin includes 1).
    """
    y, p = _check(y, p)
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    bins = np.clip(np.floor(p * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    keep = counts > 0
    return sum_p[keep] / counts[keep], sum_y[keep] / counts[keep], counts[keep]


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE ``= sum_b (n_b / n) |mean(y in b) - mean(p in b)|`` over equal-width bins."""
    mean_p, rate, counts = reliability_curve(y, p, n_bins)
    return float(np.sum(counts * np.abs(rate - mean_p)) / np.sum(counts))


def evaluate(y, p, threshold: float) -> dict[str, float]:
    """All metrics of the run report, for scores ``p`` and a threshold tuned on dev.

    Returns
    -------
    dict
        ``roc_auc, pr_auc, log_loss, brier, accuracy, precision, recall, f1, threshold,
        lift_at_10, ece`` (the classification metrics at ``threshold``), the same four
        classification metrics at 0.5 with suffix ``_at_0.5``, ``gains_at_{5,10,20}`` and
        ``lift_at_{5,20}``, and ``positive_rate`` and ``n``.
    """
    y, p = _check(y, p)
    out = {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        **classification_at(y, p, threshold),
        "threshold": float(threshold),
    }
    for key, value in classification_at(y, p, 0.5).items():
        out[f"{key}_at_0.5"] = value
    for fraction in GAIN_FRACTIONS:
        pct = round(fraction * 100)
        out[f"gains_at_{pct}"] = gains_at(y, p, fraction)
        out[f"lift_at_{pct}"] = lift_at(y, p, fraction)
    out["ece"] = expected_calibration_error(y, p)
    out["positive_rate"] = float(y.mean())
    out["n"] = len(y)
    return out
