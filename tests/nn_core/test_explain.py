"""Integrated-gradient reason codes (issue 18.2) and the waterfall (18.5): completeness on a
model trained on the bundled table, the baseline (medians and modes from the drift reference,
means without it), a planted signal found, ensembles, the per-column sums, the Python API
and the waterfall's bars."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from nn_core import MLP, load_model, save_model
from nn_core.drift import fit_reference
from nn_core.ensemble import Ensemble
from nn_core.explain import (
    BASELINE_MEANS,
    BASELINE_MEDIANS,
    ChunkExplainer,
    Combined,
    attribute,
    baseline_inputs,
    explain,
    gauss_legendre,
    integrated_gradients,
)
from nn_core.plots import waterfall_bars, waterfall_figure
from nn_core.preprocessing import Preprocessing, features_from_inputs


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    """A small network on 65 % of the bundled table (numpy backend: no compile), saved with
    its drift reference; the table and 300 held-out rows."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
    from export_helpers import train_uci_model

    d = tmp_path_factory.mktemp("uci") / "model"
    df, test = train_uci_model(d, hidden=(16, 8), epochs=3)
    plain = load_model(d, backend="numpy")
    train = np.setdiff1d(np.arange(len(df)), test)
    pre = plain.preprocessing
    reference = fit_reference(pre.columns, pre.inputs(df.iloc[train]),
                              plain.predict_proba(df.iloc[train]))
    save_model(d, plain.network, pre, reference=reference)
    return load_model(d, backend="numpy"), df, test[:300]


def test_gauss_legendre_integrates_polynomials_on_the_unit_interval():
    a, v = gauss_legendre(4)
    assert np.isclose(v.sum(), 1.0) and (0 < a).all() and (a < 1).all()
    assert np.isclose((v * a**7).sum(), 1 / 8)  # exact up to degree 2m - 1 = 7


def test_logistic_regression_has_the_closed_form():
    """With no hidden layer z = w.x + b is linear along the path, so
    IG_j = (x_j - x'_j) w_j (sigma(z) - sigma(z')) / (z - z') exactly; the integrand is smooth
    and 32 Gauss-Legendre nodes reach it to rounding."""
    rng = np.random.default_rng(4)
    m = MLP(5, (), dtype="float64", backend="numpy", seed=1)
    f = Combined([(m, 1.0)])
    X, X0 = 2 * rng.normal(size=(6, 5)), rng.normal(size=5)
    W, b = m.params[0]
    z, z0 = X @ W[:, 0] + b[0], X0 @ W[:, 0] + b[0]
    sig = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-z0))
    want = (X - X0) * W[:, 0] * ((sig[0] - sig[1]) / (z - z0))[:, None]
    np.testing.assert_allclose(integrated_gradients(f, X, X0, 32), want, rtol=1e-10,
                               atol=1e-15)


def test_completeness_on_the_trained_model(uci):
    model, df, rows = uci
    X = model.features(df.iloc[rows])
    e = attribute(model, X)
    delta = e.value - e.baseline_value
    total = e.contributions.sum(axis=1)
    assert not e.failed.any()
    assert (np.abs(total - delta) <= np.maximum(0.01 * np.abs(delta), 1e-4)).all()
    np.testing.assert_allclose(e.error, np.abs(total - delta), atol=1e-12)
    # f(x) is the model's own probability (float64 reference vs the backend)
    np.testing.assert_allclose(e.value, model.predict_proba(df.iloc[rows]), atol=1e-6)
    assert e.columns == model.preprocessing.input_columns
    assert e.baseline == BASELINE_MEDIANS
    assert (e.steps >= 32).all()


def test_per_column_sums_are_the_feature_attributions_summed(uci):
    model, df, rows = uci
    X = model.features(df.iloc[rows[:20]])
    e = attribute(model, X)
    pre = model.preprocessing
    U0, _ = baseline_inputs(pre, model.reference)
    X0 = features_from_inputs(pre.columns, U0)[0][0]
    A = integrated_gradients(Combined.of(model), X, X0, 32)
    for j, s in enumerate(pre.column_slices().values()):
        # rows that needed more nodes differ by their (smaller) quadrature error only
        np.testing.assert_allclose(e.contributions[e.steps == 32, j],
                                   A[e.steps == 32, s].sum(axis=1), atol=1e-12)


def test_baseline_is_the_medians_and_modes_or_the_means(uci):
    model, df, _ = uci
    pre = model.preprocessing
    train = df.drop(index=df.index[uci[2]])  # not exactly the training rows: close enough
    U0, text = baseline_inputs(pre, model.reference)
    assert text == BASELINE_MEDIANS
    for i, c in enumerate(pre.columns):
        if c["kind"] == "categorical":
            mode = pd.Series(pre.inputs(train)[:, i]).mode()[0]
            assert U0[0, i] == mode, c["name"]
        elif c["name"] in ("PageValues", "Administrative", "ProductRelated"):
            assert U0[0, i] == pytest.approx(np.median(train[c["name"]]), rel=0.1, abs=1e-9)
    U1, text = baseline_inputs(pre)
    assert text == BASELINE_MEANS
    X1 = features_from_inputs(pre.columns, U1)[0][0]
    for c, s in zip(pre.columns, pre.column_slices().values(), strict=True):
        assert (X1[s] == 0).all() if c["kind"] == "categorical" else abs(X1[s][0]) < 1e-12


def test_planted_signal_gets_the_largest_attribution():
    """y depends on column ``signal`` only; the network learns it and the reasons say so."""
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"noise_a": rng.normal(size=n), "signal": rng.normal(size=n),
                          "noise_b": rng.normal(size=n),
                          "colour": rng.choice(["red", "green", "blue"], size=n)})
    y = (frame["signal"] + 0.1 * rng.normal(size=n) > 0.5).astype(float).to_numpy()
    pre = Preprocessing([
        {"name": "noise_a", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0},
        {"name": "signal", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0},
        {"name": "noise_b", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0},
        {"name": "colour", "kind": "categorical", "categories": ["blue", "green", "red"]},
    ])
    X = pre.transform(frame)
    m = MLP(X.shape[1], (8,), activation="tanh", dtype="float64", backend="numpy", seed=0)
    m.fit(X, y, epochs=15, batch_size=64, lr=1e-2)
    from nn_core.modeldir import Predictor

    p = Predictor(m, pre, None)
    out = explain(p, frame.iloc[:400], 2)
    far = np.abs(frame["signal"].iloc[:400] - 0.0) > 1.0  # rows far from the baseline
    assert (out["reason_1"][far] == "signal").mean() > 0.95
    e = attribute(p, X[:400])
    assert np.argmax(np.abs(e.contributions).mean(axis=0)) == 1
    assert list(out.columns) == ["reason_1", "contribution_1", "reason_2", "contribution_2",
                                 "probability", "baseline_probability", "complete"]
    assert out["complete"].all()
    # signed: a high signal raises the probability, a low one lowers it
    top = e.contributions[:, 1]
    assert (top[frame["signal"].iloc[:400].to_numpy() > 1.5] > 0).all()
    assert (top[frame["signal"].iloc[:400].to_numpy() < -1.5] < 0).all()


def test_ensemble_members_and_bias_are_explained(uci):
    model, df, rows = uci
    net = model.network
    other = MLP(net.n_inputs, (4,), activation="tanh", dtype=net.dtype, backend="numpy", seed=5)
    from nn_core.modeldir import Predictor

    p = Predictor(Ensemble([(net, 0.7), (other, 0.3)], bias=0.25), model.preprocessing, None)
    X = p.features(df.iloc[rows[:50]])
    e = attribute(p, X)
    np.testing.assert_allclose(e.value, 1 / (1 + np.exp(-p.logit(X))), atol=1e-6)
    assert not e.failed.any()
    delta = e.value - e.baseline_value
    assert (np.abs(e.contributions.sum(axis=1) - delta)
            <= np.maximum(0.01 * np.abs(delta), 1e-4)).all()
    # a calibrated model: the reasons stay those of sigma(z), and the summary says so
    from nn_core.calibration import Platt

    calibrated = Predictor(Ensemble([(net, 0.7), (other, 0.3)], bias=0.25,
                                    calibration=Platt(2.0, -1.0)), model.preprocessing, None)
    np.testing.assert_allclose(attribute(calibrated, X).contributions, e.contributions)
    c = ChunkExplainer(calibrated, 1)
    c(np.arange(1, 51), X)
    assert "calibration is not explained" in c.summary()


def test_failing_rows_are_reported_not_hidden(uci):
    model, df, rows = uci
    X = model.features(df.iloc[rows[:50]])
    e = attribute(model, X, steps=1, max_steps=1, rtol=1e-9, atol=1e-12)
    assert e.failed.sum() > 40 and (e.steps == 1).all()
    c = ChunkExplainer(model, 2)
    c(np.arange(1, 51), X)
    assert c.rows == 50 and "failed for 0 of 50 rows" in c.summary()


def test_chunk_explainer_texts_and_kept_row(uci):
    model, df, rows = uci
    X = model.features(df.iloc[rows[:30]])
    c = ChunkExplainer(model, 3, row=107)
    texts = c(np.arange(100, 130), X)
    assert list(texts) == c.names == ["reason_1", "contribution_1", "reason_2",
                                      "contribution_2", "reason_3", "contribution_3"]
    e = attribute(model, X)
    order, contrib = e.top(3)
    assert texts["reason_1"] == [e.columns[j] for j in order[:, 0]]
    np.testing.assert_allclose([float(t) for t in texts["contribution_2"]], contrib[:, 1],
                               rtol=1e-5)
    np.testing.assert_allclose(c.row_explanation.contributions[0], e.contributions[7])
    only_row = ChunkExplainer(model, 0, row=3)
    assert only_row(np.arange(1, 31), X) == {} and only_row.names == []
    np.testing.assert_allclose(only_row.row_explanation.contributions[0], e.contributions[2])
    with pytest.raises(ValueError, match="must be in"):
        ChunkExplainer(model, 99)
    with pytest.raises(ValueError, match="k must be in"):
        explain(model, df.iloc[:2], 0)


def test_waterfall_bars_go_from_the_baseline_to_the_probability(uci):
    model, df, rows = uci
    e = attribute(model, model.features(df.iloc[rows[:1]]))
    bars = waterfall_bars(e.baseline_value, e.value[0], e.columns, e.contributions[0], k=5)
    assert bars[0].label == "f(baseline)" and bars[-1].label == "f(x)"
    assert bars[-2].label == "other columns" and len(bars) == 5 + 3
    assert bars[0] == (bars[0].label, 0.0, e.baseline_value)
    for before, after in itertools.pairwise(bars[:-1]):
        assert after.start == pytest.approx(before.end)  # each step starts where one ended
    assert bars[-2].end == pytest.approx(e.value[0], abs=max(0.01 * abs(
        e.value[0] - e.baseline_value), 1e-4))
    top = np.argsort(-np.abs(e.contributions[0]), kind="stable")[:5]
    assert [b.label for b in bars[1:6]] == [e.columns[j] for j in top]
    fig = waterfall_figure(bars)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [b.label for b in bars]
    # every column shown: no "other columns" bar
    every = waterfall_bars(0.5, 0.6, ["a", "b"], np.array([0.02, 0.08]), k=10)
    assert [b.label for b in every] == ["f(baseline)", "b", "a", "f(x)"]
