"""An ensemble of one-hidden-layer members as one wider network (``Ensemble.merged``): the same
logit as the per-member sum, on both backends and through the one-hot path of a loaded
model directory; members it cannot merge leave the ensemble on the per-member path."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from onehot_cases import COLUMNS, raw_inputs  # the table of tests/nn_core/test_onehot.py

from nn_core import MLP, load_model, modeldir, save_model
from nn_core.calibration import Isotonic, Platt
from nn_core.ensemble import Ensemble, embed_inputs
from nn_core.onehot import InputSplit
from nn_core.preprocessing import Preprocessing, features_from_inputs
from nn_core.testing import TOLERANCES, relative_error


def _net(hidden, seed, n_inputs=16, dtype="float64", backend="numba", activation="relu"):
    m = MLP(n_inputs, hidden, activation=activation, dtype=dtype, seed=seed, backend=backend)
    m.theta += np.random.default_rng(seed).normal(scale=0.3, size=m.n_params).astype(dtype)
    return m


def _per_member(e: Ensemble, X: np.ndarray) -> np.ndarray:
    """``c + sum_k w_k z_k(X)`` from the members one at a time (``member_logits``)."""
    return e.bias + e.member_logits(X) @ np.array([w for _, w in e.members])


def _reference_logit(m: MLP, X: np.ndarray) -> np.ndarray:
    """A one-hidden-layer ReLU member's logit in float64, by NumPy."""
    (W, b), (v, d) = m.params
    return (np.maximum(X @ W.astype(np.float64) + b, 0) @ v.astype(np.float64) + d)[:, 0]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_seed_ensemble_is_one_network_of_every_hidden_unit(backend):
    X = np.random.default_rng(0).normal(size=(300, 16))
    nets = [_net((h,), s, backend=backend) for s, h in enumerate((4, 7, 5))]
    e = Ensemble([(m, 1 / 3) for m in nets], bias=0.3)
    merged = e.merged()
    assert merged.hidden == (16,) and merged.output == "identity"
    assert merged.backend == backend and e.merged() is merged  # built once
    expected = 0.3 + sum(_reference_logit(m, X) for m in nets) / 3
    assert np.abs(e.logit(X) - expected).max() <= 1e-10
    assert np.abs(_per_member(e, X) - expected).max() <= 1e-10
    np.testing.assert_allclose(e.predict_proba(X), 1 / (1 + np.exp(-expected)), atol=1e-12)


def test_weights_of_any_sign_and_a_calibration():
    X = np.random.default_rng(1).normal(size=(200, 16))
    nets = [_net((6,), s) for s in range(3)]
    for calibration in (Platt(1.7, -0.4),
                        Isotonic(np.array([0.0, 0.2, 0.7, 1.0]), np.array([0.0, 0.1, 0.8, 1.0]))):
        e = Ensemble(list(zip(nets, (0.8, -0.35, 1.25), strict=True)), bias=-0.6,
                     calibration=calibration)
        assert e.merged() is not None
        z = _per_member(e, X)
        assert np.abs(e.logit(X) - z).max() <= 1e-10
        np.testing.assert_allclose(e.predict_proba(X), calibration(z), atol=1e-10)
        np.testing.assert_allclose(e.predict_proba(X, calibrated=False),
                                   1 / (1 + np.exp(-z)), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_within_its_rounding(backend):
    X = np.random.default_rng(2).normal(size=(500, 16)).astype(np.float32)
    nets = [_net((64,), s, dtype="float32", backend=backend) for s in range(5)]
    e = Ensemble([(m, 0.2) for m in nets])
    assert e.merged().dtype == "float32"
    exact = sum(_reference_logit(m, X.astype(np.float64)) for m in nets) / 5
    assert relative_error(exact, e.logit(X)) <= TOLERANCES["float32"]
    assert relative_error(exact, _per_member(e, X)) <= TOLERANCES["float32"]


def test_the_backends_agree_on_the_merged_network():
    X = np.random.default_rng(3).normal(size=(400, 16))
    for dtype in ("float64", "float32"):
        got = [Ensemble([(_net((h,), s, dtype=dtype, backend=backend), 0.5)
                         for s, h in enumerate((9, 3))], bias=0.1).logit(X.astype(dtype))
               for backend in ("numpy", "numba")]
        assert relative_error(*got) <= TOLERANCES[dtype]


def test_mixed_view_members_merge_with_their_zero_rows():
    """Members trained on column subsets, widened to the union (``embed_inputs``)."""
    X = np.random.default_rng(4).normal(size=(300, 16))
    views = [np.arange(10), np.arange(4, 16), np.array([0, 3, 15])]
    small = [_net((5,), s, n_inputs=len(cols)) for s, cols in enumerate(views)]
    e = Ensemble([(embed_inputs(m, cols, 16), 0.25) for m, cols in zip(small, views,
                                                                        strict=True)])
    assert e.merged().hidden == (15,)
    expected = sum(_reference_logit(m, X[:, cols]) for m, cols in zip(small, views,
                                                                      strict=True)) / 4
    assert np.abs(e.logit(X) - expected).max() <= 1e-10


@pytest.mark.parametrize("odd", [
    _net((), 7),                               # a logistic regression: no hidden layer
    _net((4, 3), 7),                           # two hidden layers
    _net((4,), 7, activation="tanh"),          # another activation
    _net((4,), 7, backend="numpy"),            # another backend
])
def test_members_that_are_not_one_layer_alike_stay_apart(odd):
    X = np.random.default_rng(5).normal(size=(100, 16))
    e = Ensemble([(_net((6,), 0), 0.4), (_net((5,), 1), 0.4), (odd, -0.7)], bias=0.2)
    assert e.merged() is None
    z_odd = Ensemble([(odd, 1.0)]).member_logits(X)[:, 0]
    expected = 0.2 + 0.4 * (_reference_logit(e.members[0][0], X)
                            + _reference_logit(e.members[1][0], X)) - 0.7 * z_odd
    assert np.abs(e.logit(X) - expected).max() <= 1e-10


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n).round(3).astype(str),
                         "c1": rng.choice(["x", "y", "z", "new"], n),
                         "b": rng.exponential(size=n).round(3).astype(str),
                         "c2": rng.choice(["p", "q", ""], n),
                         "c3": rng.choice(["u", "v"], n)})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_loaded_ensemble_scores_tables_through_the_one_hot_path(tmp_path, monkeypatch, dtype):
    """``Predictor.predict_proba`` of a calibrated ensemble directory: the merged network
    through the one-hot path (once per table), then the bias and the calibration, the
    numbers of ``Ensemble.predict_proba`` on the feature matrix, member by member."""
    nets = [_net((h,), s, dtype=dtype) for s, h in enumerate((5, 8, 3))]
    e = Ensemble(list(zip(nets, (0.5, 0.25, 0.4), strict=True)), bias=-0.3,
                 calibration=Platt(1.3, 0.2))
    save_model(tmp_path, e, Preprocessing(copy.deepcopy(COLUMNS)))
    model = load_model(tmp_path)
    assert model.one_network
    calls = []
    real = modeldir.predict_inputs
    monkeypatch.setattr(modeldir, "predict_inputs", lambda *a: calls.append(a[0]) or real(*a))
    frame = _frame(200, 6)
    p = model.predict_proba(frame)
    assert len(calls) == 1 and calls[0].hidden == (16,)
    X = model.features(frame).astype(dtype)
    per_member = e.calibration(_per_member(e, X))
    assert relative_error(per_member, p) <= TOLERANCES[dtype]
    U = raw_inputs(3_000, seed=8)
    F = features_from_inputs(COLUMNS, U, dtype)[0]
    got = model.proba_inputs(InputSplit(COLUMNS), U)
    assert relative_error(e.calibration(_per_member(e, F)), got) <= TOLERANCES[dtype]


def test_an_ensemble_that_does_not_merge_keeps_the_feature_matrix(tmp_path, monkeypatch):
    e = Ensemble([(_net((5,), 0), 0.5), (_net((), 1), 0.5)])
    save_model(tmp_path, e, Preprocessing(copy.deepcopy(COLUMNS)))
    model = load_model(tmp_path)
    assert not model.one_network
    assert model.proba_inputs(InputSplit(COLUMNS), raw_inputs(50)) is None
    monkeypatch.setattr(modeldir, "predict_inputs", lambda *a: pytest.fail("one-hot path"))
    frame = _frame(100, 7)
    np.testing.assert_allclose(model.predict_proba(frame),
                               e.predict_proba(model.features(frame)), atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_subnormal_weights_are_zero_in_the_merged_network_only(dtype):
    """Weight decay leaves subnormal weights (slow to multiply); the merged network holds 0
    in their place, the members keep them, and the logit is the same to rounding."""
    tiny = np.finfo(dtype).tiny
    nets = [_net((6,), s, dtype=dtype) for s in range(2)]
    for m in nets:
        m.params[0][0][::2, 1] = tiny / 4      # first layer, a unit that no longer learns
        m.params[1][0][3] = -tiny / 8          # an output weight
    before = [m.theta.copy() for m in nets]
    e = Ensemble([(m, 0.5) for m in nets])
    theta = e.merged().theta
    assert not ((theta != 0) & (np.abs(theta) < tiny)).any()
    assert all(np.array_equal(m.theta, t) for m, t in zip(nets, before, strict=True))
    X = np.random.default_rng(9).normal(size=(200, 16)).astype(dtype)
    assert relative_error(_per_member(e, X), e.logit(X)) <= TOLERANCES[dtype]
