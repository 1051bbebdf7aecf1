"""Gradients with respect to the inputs (issue 18.1): ``MLP.input_gradient`` against float64
finite differences (``nn_core.gradcheck.input_gradcheck``) on every activation, both outputs
and several shapes, and the chain rule of the probability against the logit's gradient."""

from __future__ import annotations

import numpy as np
import pytest

from nn_core import MLP, input_gradcheck
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
