"""nn_core.bootstrap: weighted metrics against the metrics of repeated rows, known
differences, pairing, determinism."""

import numpy as np
import pytest

from nn_core import bootstrap, metrics


def tied_case(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(np.int8)
    y[:2] = (0, 1)
    p = np.round(rng.random(n) * 0.6 + 0.4 * y, 1)  # few distinct scores: many ties
    return y, p, rng


@pytest.mark.parametrize("name, plain", [("roc_auc", metrics.roc_auc),
                                         ("pr_auc", metrics.pr_auc)])
def test_weighted_metric_is_the_metric_of_the_repeated_rows(name, plain):
    y, p, rng = tied_case()
    w = bootstrap.resample_counts(len(y), 20, rng)
    got = bootstrap.WEIGHTED_METRICS[name](y, p, w)
    for b in range(len(w)):
        rows = np.repeat(np.arange(len(y)), w[b])
        assert got[b] == pytest.approx(plain(y[rows], p[rows]), abs=1e-12)
    ones = np.ones((1, len(y)))
    assert bootstrap.WEIGHTED_METRICS[name](y, p, ones)[0] == pytest.approx(plain(y, p), abs=1e-12)


def test_resample_counts_draw_n_rows_each():
    w = bootstrap.resample_counts(50, 300, np.random.default_rng(1))
    assert w.shape == (300, 50) and (w.sum(axis=1) == 50).all() and w.min() >= 0
    # Each row is drawn once per resample on average (Binomial(50, 1/50)).
    assert abs(w.mean(axis=0) - 1).max() < 0.35


def test_a_difference_that_every_resample_keeps():
    # A ranks perfectly (AUC 1); B gives every row the same score (AUC 0.5 by the tie
    # rule; AP = prevalence of the resample). So the ROC-AUC difference is 0.5 exactly in
    # every resample, and the interval is [0.5, 0.5].
    y, _, _ = tied_case()
    res = bootstrap.paired_bootstrap([y, y[::-1]], [y + 0.5, y[::-1] * 2.0],
                                     [np.zeros(len(y))] * 2, "roc_auc", 500, seed=3)
    assert res.estimate == pytest.approx(0.5)
    assert (res.low, res.high) == pytest.approx((0.5, 0.5))
    assert res.excludes_zero and res.share_above_zero == 1.0
    ap = bootstrap.paired_bootstrap([y], [y + 0.5], [np.zeros(len(y))], "pr_auc", 500)
    assert ap.estimate == pytest.approx(1 - y.mean())
    assert 0 < ap.low < ap.estimate < ap.high < 1


def test_identical_models_differ_by_zero():
    y, p, _ = tied_case()
    res = bootstrap.paired_bootstrap([y], [p], [p.copy()], "pr_auc", 300)
    assert (res.estimate, res.low, res.high) == (0.0, 0.0, 0.0)
    assert not res.excludes_zero


def test_pairing_cancels_what_the_rows_share():
    # B = A plus a little noise: each model's metric varies with the drawn rows far more
    # than their difference does, because both see the same rows.
    rng = np.random.default_rng(5)
    y = (rng.random(1500) < 0.2).astype(np.int8)
    pa = y + rng.normal(0, 1.0, len(y))
    pb = pa + rng.normal(0, 0.05, len(y))
    est, rep = bootstrap.bootstrap_replicates([y], {"a": [pa], "b": [pb]}, "roc_auc", 1000)
    assert est["a"] == pytest.approx(metrics.roc_auc(y, pa))
    assert np.std(rep["a"] - rep["b"]) < 0.2 * np.std(rep["a"])
    # A weaker model B is told apart: 0 lies outside the paired interval.
    worse = pa + rng.normal(0, 1.0, len(y))
    res = bootstrap.paired_bootstrap([y], [pa], [worse], "roc_auc", 1000)
    assert res.estimate > 0 and res.excludes_zero


def test_the_interval_is_seeded_and_averages_over_blocks():
    y, p, rng = tied_case()
    q = p + rng.normal(0, 0.3, len(y))
    a = bootstrap.paired_bootstrap([y, y], [p, q], [q, q], "roc_auc", 400, seed=7)
    b = bootstrap.paired_bootstrap([y, y], [p, q], [q, q], "roc_auc", 400, seed=7)
    c = bootstrap.paired_bootstrap([y, y], [p, q], [q, q], "roc_auc", 400, seed=8)
    assert a == b and a != c
    # The estimate is the mean of the per-block differences (the second block's is 0).
    assert a.estimate == pytest.approx((metrics.roc_auc(y, p) - metrics.roc_auc(y, q)) / 2)


def test_bad_arguments():
    y, p, _ = tied_case()
    with pytest.raises(ValueError, match="metric"):
        bootstrap.paired_bootstrap([y], [p], [p], "f1")
    with pytest.raises(ValueError, match="block"):
        bootstrap.paired_bootstrap([y, y], [p], [p, p])
    with pytest.raises(ValueError, match="length"):
        bootstrap.weighted_roc_auc(y, p[:-1], np.ones((1, len(y))))


def test_shared_rows_draw_the_blocks_together():
    # Two blocks of the same rows: with shared_rows, block 1's scores (A's in reverse rank
    # order of B's) and block 2's (B's of A's) give differences that cancel in every
    # resample; drawn independently they do not.
    y, p, rng = tied_case()
    q = p + rng.normal(0, 0.3, len(y))
    shared = bootstrap.paired_bootstrap([y, y], [p, q], [q, p], "roc_auc", 300,
                                        shared_rows=True)
    apart = bootstrap.paired_bootstrap([y, y], [p, q], [q, p], "roc_auc", 300)
    assert shared.estimate == pytest.approx(0.0, abs=1e-12)
    assert shared.low == pytest.approx(0.0, abs=1e-12)
    assert shared.high == pytest.approx(0.0, abs=1e-12)
    assert apart.high - apart.low > 0.01
    with pytest.raises(ValueError, match="one length"):
        bootstrap.paired_bootstrap([y, y[:-1]], [p, p[:-1]], [p, p[:-1]], shared_rows=True)
