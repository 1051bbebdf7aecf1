"""The 2-2-1 network of docs/worked-example.md: every number, against nn_core and the page."""

import re
from pathlib import Path

import numpy as np
import pytest

from nn_core import MLP, reference
from nn_core.losses import bce_with_logits, output_delta

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-example.md"

X = np.array([[1.0, 2.0], [2.0, -0.5]])
y = np.array([1.0, 0.0])
WEIGHTS = [
    (np.array([[0.1, -0.2], [0.3, 0.4]]), np.array([0.0, -0.3])),
    (np.array([[0.5], [-0.6]]), np.array([0.2])),
]

# The numbers of the page, worked by hand (10 decimals).
EXPECTED = {
    "Z1": [[0.7, 0.3], [0.05, -0.9]],
    "H1": [[0.7, 0.3], [0.05, 0.0]],
    "Z2": [0.37, 0.225],
    "Y": [0.5914589784, 0.5560138905],
    "l": [0.5251629497, 0.8119620020],
    "L": 0.6685624759,
    "delta2": [-0.2042705108, 0.2780069453],
    "dW2": [[-0.1290890103], [-0.0612811532]],
    "db2": [0.0737364345],
    "dH1": [[-0.1021352554, 0.1225623065], [0.1390034726, -0.1668041672]],
    "delta1": [[-0.1021352554, 0.1225623065], [0.1390034726, 0.0]],
    "dW1": [[0.1758716899, 0.1225623065], [-0.2737722471, 0.2451246129]],
    "db1": [0.0368682172, 0.1225623065],
    "W1_new": [[0.0824128310, -0.2122562306], [0.3273772247, 0.3754875387]],
    "b1_new": [-0.0036868217, -0.3122562306],
    "W2_new": [[0.5129089010], [-0.5938718847]],
    "b2_new": [0.1926263566],
    "Y_new": [0.6069107909, 0.5480082357],
}


def _model(backend="numpy"):
    m = MLP(2, (2,), "relu", "sigmoid", dtype="float64", backend=backend)
    m.set_weights(WEIGHTS)
    return m


def _close(actual, name):
    np.testing.assert_allclose(actual, EXPECTED[name], rtol=0, atol=6e-11, err_msg=name)


def test_forward_pass_by_hand():
    m = _model()
    H, _Z, _A, Z = reference.forward(m.params, X, reference.rules("relu", "sigmoid"))
    _close(H[0] @ WEIGHTS[0][0] + WEIGHTS[0][1], "Z1")
    _close(H[1], "H1")
    _close(Z, "Z2")
    _close(m.predict_proba(X), "Y")
    _close(bce_with_logits(Z, y), "l")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_loss_and_gradients_by_hand(backend):
    loss, grads = _model(backend).loss_and_grad(X, y)
    _close(loss, "L")
    (dW1, db1), (dW2, db2) = grads
    _close(dW1, "dW1")
    _close(db1, "db1")
    _close(dW2, "dW2")
    _close(db2, "db2")


def test_intermediate_deltas_by_hand():
    m = _model()
    H, _Z, _A, _z = reference.forward(m.params, X, reference.rules("relu", "sigmoid"))
    delta2 = output_delta(m.predict_proba(X), y, np.ones(2), 2)
    _close(delta2, "delta2")
    dH1 = delta2[:, None] @ WEIGHTS[1][0].T
    _close(dH1, "dH1")
    _close(dH1 * (H[1] > 0), "delta1")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_sgd_step_by_hand(backend):
    m = _model(backend)
    m.fit(X, y, epochs=1, batch_size=2, optimizer="sgd", lr=0.1)
    (W1, b1), (W2, b2) = m.params
    _close(W1, "W1_new")
    _close(b1, "b1_new")
    _close(W2, "W2_new")
    _close(b2, "b2_new")
    _close(m.predict_proba(X), "Y_new")


def test_the_page_shows_the_same_numbers():
    text = DOC.read_text(encoding="utf-8")
    shown = {float(s) for s in re.findall(r"-?\d+\.\d{10}", text)}
    for name, value in EXPECTED.items():
        for v in np.ravel(value):
            if abs(v) >= 1e-3 and len(f"{abs(v):.10f}".rstrip("0")) > 6:  # the 10-decimal ones
                assert float(f"{v:.10f}") in shown, f"{name} = {v:.10f} missing from {DOC.name}"
