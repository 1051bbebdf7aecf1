"""Finite-difference gradient checks over every activation, depth, output and loss option."""

import dataclasses

import numpy as np
import pytest

from nn_core import MLP, activations, gradcheck

ACTS = list(activations.ACTIVATIONS)
OPTIONS = {
    "plain": {},
    "sample_weight": {"sample_weight": np.random.default_rng(7).uniform(0.2, 2.0, 12)},
    "pos_weight": {"pos_weight": 4.0},
    "l2": {"l2": 0.3},
}


def _problem(output):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 4))
    y = (rng.random(12) < 0.4).astype(float) if output == "sigmoid" else rng.normal(size=12)
    return X, y


def _model(activation, n_hidden, output):
    m = MLP(4, (3,) * n_hidden, activation, output, dtype="float64", seed=2, backend="numpy")
    # Check at a generic point: with zero biases, a ReLU unit whose inputs are
    # all zero sits exactly on its kink, where no derivative exists.
    m.theta[:] = np.random.default_rng(3).normal(0.0, 0.8, m.n_params)
    return m


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("n_hidden", [0, 1, 2, 3])
@pytest.mark.parametrize("activation", ACTS)
def test_gradcheck_every_configuration(activation, n_hidden, output, option):
    X, y = _problem(output)
    err = gradcheck(_model(activation, n_hidden, output), X, y, **OPTIONS[option])
    assert err < 1e-6


def test_gradcheck_catches_a_wrong_derivative(monkeypatch):
    """The check must fail when backprop is wrong: tanh's derivative off by a factor."""
    X, y = _problem("sigmoid")
    m = _model("tanh", 2, "sigmoid")
    assert gradcheck(m, X, y) < 1e-6
    wrong = dataclasses.replace(
        activations.ACTIVATIONS["tanh"], backward=lambda Z, H, dH: dH * (1 - H * H) * 1.01
    )
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    assert gradcheck(m, X, y) > 1e-3


def test_gradcheck_catches_a_missing_l2_term(monkeypatch):
    """Dropping the L2 term from dW (but not from the loss) must be detected."""
    from nn_core import reference

    X, y = _problem("sigmoid")
    m = _model("relu", 1, "sigmoid")
    original = reference.backward
    monkeypatch.setattr(
        reference,
        "backward",
        lambda p, H, Z, A, d, r, l2, masks=None: original(p, H, Z, A, d, r, 0.0),
    )
    assert gradcheck(m, X, y, l2=0.5) > 1e-3
