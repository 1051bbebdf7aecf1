"""Paired bootstrap of a metric difference between two models scored on the same rows.

Two models A and B score the same test rows (one block of rows per seed). A bootstrap
resample draws each block's rows with replacement (``n`` draws from its ``n`` rows, the
blocks independently) and recomputes, on the drawn rows, the statistic

    Delta = (1 / S) sum_s [ M(y_s, pA_s) - M(y_s, pB_s) ]

(the mean over the ``S`` seeds of the per-seed difference of the metric ``M``). Both
models see the *same* drawn rows, so what the rows have in common (hard or easy
buyers) cancels in the difference: that is the pairing. The ``(1 - level) / 2`` and
``(1 + level) / 2`` quantiles of the resampled Delta are the percentile interval.

A resample is stored as row counts ``w`` (how often each row was drawn), so the metrics
are computed once per resample on the sorted scores with weights, without materialising
the resampled rows: :func:`weighted_roc_auc` and :func:`weighted_average_precision`
equal ``nn_core.metrics.roc_auc`` and ``pr_auc`` of the rows repeated ``w`` times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: name -> vectorised weighted metric ``f(y (n,), p (n,), w (B, n)) -> (B,)``.
WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _tie_groups(p: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``p`` and the start index of each run of equal scores in it."""
    order = np.argsort(-p if descending else p, kind="mergesort")
    ps = p[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ps) != 0) + 1]
    return order, starts


def _group_weights(y: np.ndarray, w: np.ndarray, order: np.ndarray,
                   starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample and tie group the total weight of positives and of negatives, (B, G)."""
    ws, ys = w[:, order], y[order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    return pos, neg


def weighted_roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC-AUC of each weighted resample.

    ``AUC_b = sum_g P_bg (N_b,<g + N_bg / 2) / (P_b N_b)`` over the tie groups ``g`` of
    equal scores in ascending order, with ``P_bg``, ``N_bg`` the weights of the positives
    and negatives in group ``g``, ``N_b,<g`` the weight of the negatives scored lower and
    ``P_b``, ``N_b`` the totals: the Mann-Whitney form of ``P(p_pos > p_neg) +
    P(p_pos == p_neg) / 2`` (``nn_core.metrics.roc_auc``).

    Parameters
    ----------
    y : ndarray (n,)
        0/1 labels.
    p : ndarray (n,)
        Scores (any monotone transform gives the same value).
    w : ndarray (B, n)
        Non-negative row weights (bootstrap counts) of B resamples; every resample needs
        positive weight on both classes.

    Returns
    -------
    ndarray (B,)
    """
    y, p, w = _as_arrays(y, p, w)
    order, starts = _tie_groups(p, descending=False)
    pos, neg = _group_weights(y, w, order, starts)
    neg_below = np.cumsum(neg, axis=1) - neg
    n1, n0 = pos.sum(axis=1), neg.sum(axis=1)
    return (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n1 * n0)


def weighted_average_precision(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision (PR-AUC) of each weighted resample.

    ``AP_b = sum_g (P_bg / P_b) TP_bg / (TP_bg + FP_bg)`` over the tie groups in
    descending order of score, ``TP_bg`` and ``FP_bg`` the cumulative weights of positives
    and negatives down to group ``g``: ``sum_j (R_j - R_{j-1}) P_j``, a tie group one step
    (``nn_core.metrics.pr_auc``). Shapes as :func:`weighted_roc_auc`.
    """
    y, p, w = _as_arrays(y, p, w)
    order, starts = _tie_groups(p, descending=True)
    pos, neg = _group_weights(y, w, order, starts)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    # A group that drew no row has tp + fp = 0 only before the first drawn row, where its
    # recall step pos is 0 too: its precision does not count.
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    return (pos * precision).sum(axis=1) / pos.sum(axis=1)


#: Metrics :func:`paired_bootstrap` knows by name.
WEIGHTED_METRICS: dict[str, WeightedMetric] = {
    "roc_auc": weighted_roc_auc,
    "pr_auc": weighted_average_precision,
}


def _as_arrays(y, p, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    if not (len(y) == len(p) == w.shape[1]):
        raise ValueError(f"y, p and w's rows differ in length: {len(y)}, {len(p)}, {w.shape[1]}")
    return y, p, w


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts of ``n`` rows: ``n`` draws with replacement per resample.

    Returns
    -------
    ndarray (n_resamples, n)
        ``w[b, i]`` = how often row ``i`` was drawn in resample ``b``; each row sums to n.
    """
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = idx + n * np.arange(n_resamples)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of ``mean_s [M(A_s) - M(B_s)]``.

    Attributes
    ----------
    estimate : float
        The difference on the rows as they are (no resampling).
    low, high : float
        Percentile interval at ``level``.
    level : float
    n_resamples : int
    share_above_zero : float
        Share of the resampled differences that are > 0.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    share_above_zero: float

    @property
    def excludes_zero(self) -> bool:
        """Whether 0 lies outside the interval (the difference is distinguishable from 0)."""
        return self.low > 0 or self.high < 0


def bootstrap_replicates(
    y: Sequence[np.ndarray],
    scores: Mapping[str, Sequence[np.ndarray]],
    metric: str = "roc_auc",
    n_resamples: int = 2000,
    seed: int = 0,
    shared_rows: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The metric of every model, averaged over blocks, on the rows as they are and on each
    of the same ``n_resamples`` resamples.

    Every model is scored on the *same* resampled rows (that is what makes a difference of
    two models' replicates paired); each block (seed) is drawn anew in each resample,
    independently of the other blocks, unless ``shared_rows``: then the blocks are the same
    rows (an event log's test users, scored by the networks of several seeds) and one draw
    per resample serves every block.

    Parameters
    ----------
    y : sequence of S arrays
        Per block (seed) the 0/1 labels (n_s,).
    scores : mapping
        Model name -> sequence of S score arrays (n_s,), the rows in the order of ``y``.
    metric : {"roc_auc", "pr_auc"}
    n_resamples : int
        Resamples B.
    seed : int
        Seed of ``numpy.random.default_rng``: the same call gives the same replicates.
    shared_rows : bool
        The blocks hold the same rows in the same order (equal lengths): draw them once.

    Returns
    -------
    estimate : dict
        Name -> ``(1 / S) sum_s M(y_s, p_s)`` on the rows as they are.
    replicates : dict
        Name -> ndarray (B,): the same mean on each resample.
    """
    if metric not in WEIGHTED_METRICS:
        raise ValueError(f"metric must be one of {list(WEIGHTED_METRICS)}, got {metric!r}")
    if len(y) == 0 or any(len(p) != len(y) for p in scores.values()):
        raise ValueError("every model needs one score array per block of y (>= 1 block)")
    if shared_rows and len({len(ys) for ys in y}) != 1:
        raise ValueError("shared_rows needs blocks of one length (the same rows)")
    f = WEIGHTED_METRICS[metric]
    rng = np.random.default_rng(seed)
    estimate = dict.fromkeys(scores, 0.0)
    replicates = {name: np.zeros(n_resamples) for name in scores}
    w = resample_counts(len(y[0]), n_resamples, rng) if shared_rows else None
    for s, ys in enumerate(y):
        ys = np.asarray(ys)
        ones = np.ones((1, len(ys)))
        if not shared_rows:
            w = resample_counts(len(ys), n_resamples, rng)
        for name, p in scores.items():
            estimate[name] += float(f(ys, p[s], ones)[0]) / len(y)
            replicates[name] += f(ys, p[s], w) / len(y)
    return estimate, replicates


def difference_interval(estimate: float, replicates: np.ndarray,
                        level: float = 0.95) -> BootstrapResult:
    """Percentile interval of a difference from its paired bootstrap replicates.

    ``estimate`` is the difference on the rows as they are and ``replicates`` (B,) the
    same difference on each resample (e.g. ``rep["A"] - rep["B"]`` from
    :func:`bootstrap_replicates`).
    """
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(float(estimate), float(low), float(high), level, len(replicates),
                           float(np.mean(replicates > 0)))


def paired_bootstrap(
    y: Sequence[np.ndarray],
    p_a: Sequence[np.ndarray],
    p_b: Sequence[np.ndarray],
    metric: str = "roc_auc",
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    shared_rows: bool = False,
) -> BootstrapResult:
    """Paired bootstrap interval of ``mean_s [M(y_s, pA_s) - M(y_s, pB_s)]``.

    Parameters
    ----------
    y, p_a, p_b : sequence of S arrays
        Per block (seed) the labels (n_s,) and the two models' scores (n_s,) of the same
        rows, in the same order.
    metric : {"roc_auc", "pr_auc"}
    n_resamples : int
        Resamples B; every block is drawn anew in each (independently of the others).
    seed : int
        Seed of ``numpy.random.default_rng``: the same call gives the same interval.
    level : float
        Coverage of the percentile interval.
    shared_rows : bool
        As :func:`bootstrap_replicates`: every block holds the same rows.

    Returns
    -------
    BootstrapResult
    """
    est, rep = bootstrap_replicates(y, {"a": p_a, "b": p_b}, metric, n_resamples, seed,
                                    shared_rows)
    return difference_interval(est["a"] - est["b"], rep["a"] - rep["b"], level)
