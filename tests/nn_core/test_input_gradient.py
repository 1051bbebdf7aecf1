"""Gradients with respect to the inputs (issue 18.1): ``MLP.input_gradient`` against float64
finite differences (``nn_core.gradcheck.input_gradcheck``) on every activation, both outputs
and several shapes, and the chain rule of the probability against the logit's gradient."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from nn_core import MLP, input_gradcheck, reference
from nn_core.activations import ACTIVATIONS
from nn_core.losses import OUTPUTS

SHAPES = [(), (4,), (5, 3)]


@pytest.mark.parametrize("hidden", SHAPES, ids=lambda h: "x".join(map(str, h)) or "linear")
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_input_gradient_matches_finite_differences(activation, output, hidden):
    rng = np.random.default_rng(len(activation) + 7 * len(hidden))
    m = MLP(6, hidden, activation=activation, output=output, dtype="float64",
            backend="numpy", seed=3)
    X = rng.normal(size=(4, 6))
    outputs = ["logit", "probability"] if output == "sigmoid" else ["logit"]
    for of in outputs:
        report = input_gradcheck(m, X, of)
        assert report.ok, str(report)
        assert report.where[:2] == (None, "X")


def test_probability_gradient_is_the_chain_rule_of_the_logit():
    m = MLP(5, (7,), activation="tanh", dtype="float64", backend="numpy", seed=1)
    X = np.random.default_rng(0).normal(size=(9, 5))
    z = m.input_gradient(X, "logit")
    p = m.predict_proba(X)
    np.testing.assert_allclose(m.input_gradient(X, "probability"), (p * (1 - p))[:, None] * z,
                               rtol=1e-12)


def test_float32_model_and_numba_backend_give_the_float64_reference_gradient():
    m = MLP(5, (4,), activation="relu", dtype="float32", seed=2)  # numba, float32
    X = np.random.default_rng(1).normal(size=(3, 5))
    g = m.input_gradient(X)
    assert g.dtype == np.float64 and g.shape == (3, 5)
    ref = MLP(5, (4,), activation="relu", dtype="float64", backend="numpy", seed=2)
    ref.set_weights([(W.astype(np.float64), b.astype(np.float64)) for W, b in m.params])
    np.testing.assert_array_equal(g, ref.input_gradient(X))
    assert input_gradcheck(m, X).ok


def test_a_wrong_gradient_fails_the_check(monkeypatch):
    m = MLP(4, (3,), activation="tanh", dtype="float64", backend="numpy")
    X = np.random.default_rng(2).normal(size=(2, 4))
    right = m.input_gradient
    monkeypatch.setattr(m, "input_gradient", lambda X, output="logit": right(X, output) * 1.01)
    report = input_gradcheck(m, X)
    assert not report.ok and report.max_error > 1e-3


# Fresh float64 networks (activation, output, n_inputs, hidden, rows, seed) whose input check
# failed with correct gradients when the floor stayed at 1e-6, below the rounding noise of
# sum_i z_i (errors 2.9e-6 to 2.3e-5; 48 of 720 such checks).
FAILED_BEFORE = [("relu", "probability", 6, (5, 4), 60, 8), ("relu", "logit", 6, (5, 4), 60, 8),
                 ("relu", "probability", 4, (3, 3, 3), 60, 7),
                 ("leaky_relu", "logit", 6, (5, 4), 60, 0)]


@pytest.mark.parametrize("case", FAILED_BEFORE, ids=lambda c: "-".join(map(str, c)))
def test_a_fresh_float64_network_passes_its_rounding_noise(case, monkeypatch):
    activation, output, n_inputs, hidden, rows, seed = case
    X = np.random.default_rng(seed).normal(size=(rows, n_inputs))
    m = MLP(n_inputs, hidden=hidden, activation=activation, dtype="float64", seed=seed)
    report = input_gradcheck(m, X, output)
    assert report.ok, report
    # The noise is that of the sum of the outputs, whose size is sum_i |z_i| (or Y_i).
    r = reference.rules(activation, "sigmoid")
    z = reference.forward(m.params, X, r)[3]
    v = z if output == "logit" else r.g(z)
    assert math.isclose(report.noise, 30 * 2.0**-53 * np.abs(v).sum() / 1e-4, rel_tol=1e-9)
    assert report.floor == report.noise / report.tolerance > 1e-6
    gradcheck_module = importlib.import_module("nn_core.gradcheck")
    monkeypatch.setattr(gradcheck_module, "NOISE_FACTOR", 0.0)  # the old rule fails it
    assert not input_gradcheck(m, X, output).ok


def test_a_small_bug_still_fails_where_the_floor_is_raised(monkeypatch):
    """The first network above (floor 3.5e-4): one input's gradient on one row 1e-4 too large
    (a relative error of 5e-5), on an entry of normal size, fails and is located."""
    X = np.random.default_rng(8).normal(size=(60, 6))
    m = MLP(6, hidden=(5, 4), activation="relu", dtype="float64", seed=8)
    right = m.input_gradient
    g = right(X, "probability")
    entry = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    assert abs(g[entry]) > 10 * input_gradcheck(m, X, "probability").floor

    def wrong(X, output="logit"):
        G = right(X, output)
        G[entry] *= 1 + 1e-4
        return G

    monkeypatch.setattr(m, "input_gradient", wrong)
    report = input_gradcheck(m, X, "probability")
    assert not report.ok and report.where == (None, "X", tuple(map(int, entry))), report
    assert math.isclose(report.max_error, 1e-4 / 2, rel_tol=0.01)


def test_bad_arguments():
    m = MLP(3, (2,), output="identity", dtype="float64", backend="numpy")
    with pytest.raises(ValueError, match="sigmoid output"):
        m.input_gradient(np.zeros((1, 3)), "probability")
    with pytest.raises(ValueError, match="'logit' or 'probability'"):
        m.input_gradient(np.zeros((1, 3)), "loss")
    with pytest.raises(ValueError, match="columns"):
        m.input_gradient(np.zeros((1, 4)))
    with pytest.raises(TypeError, match=r"nn_core\.MLP"):
        input_gradcheck(object(), np.zeros((1, 3)))
