"""Training behaviour: it learns, continues, stops on request; schedules follow their formulas."""

import math

import numpy as np
import pytest

from nn_core import MLP
from nn_core.optim import learning_rate


def _xor(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(float)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_learns_xor_which_logistic_regression_cannot(backend):
    X, y = _xor()
    net = MLP(2, (16, 16), seed=0, backend=backend)
    history = net.fit(X, y, epochs=60, batch_size=32, lr=1e-2)
    acc = ((net.predict_proba(X) > 0.5) == y).mean()
    logreg = MLP(2, (), seed=0, backend=backend)
    logreg.fit(X, y, epochs=60, batch_size=32, lr=1e-2)
    acc_lr = ((logreg.predict_proba(X) > 0.5) == y).mean()
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert acc > 0.95
    assert acc_lr < 0.7


def test_fit_continues_where_it_stopped():
    X, y = _xor(300)
    a = MLP(2, (8,), seed=1, backend="numpy", dtype="float64")
    a.fit(X, y, epochs=4, lr=1e-2)
    b = MLP(2, (8,), seed=1, backend="numpy", dtype="float64")
    b.fit(X, y, epochs=2, lr=1e-2)
    b.fit(X, y, epochs=2, lr=1e-2)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12)


def test_callback_stops_training_and_sees_each_epoch():
    X, y = _xor(200)
    seen = []
    history = MLP(2, (4,)).fit(X, y, epochs=10, callback=lambda e, loss: seen.append(e) or e == 2)
    assert seen == [0, 1, 2]
    assert len(history["loss"]) == 3


def test_get_and_set_weights_restore_a_snapshot():
    X, y = _xor(200)
    m = MLP(2, (4,))
    snapshot = m.get_weights()
    p0 = m.predict_proba(X)
    m.fit(X, y, epochs=3)
    assert not np.array_equal(m.predict_proba(X), p0)
    m.set_weights(snapshot)
    assert np.array_equal(m.predict_proba(X), p0)


def test_pos_weight_raises_the_predicted_rate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    y = (rng.random(1000) < 0.15).astype(float)  # labels independent of X: p -> base rate
    plain, weighted = MLP(3, (), seed=0), MLP(3, (), seed=0)
    plain.fit(X, y, epochs=30, lr=1e-2)
    weighted.fit(X, y, epochs=30, lr=1e-2, pos_weight=85 / 15)
    assert plain.predict_proba(X).mean() == pytest.approx(0.15, abs=0.05)
    assert weighted.predict_proba(X).mean() == pytest.approx(0.5, abs=0.08)


def test_l2_and_weight_decay_shrink_the_weights():
    X, y = _xor(400)
    norms = {}
    for name, kw in {"none": {}, "l2": {"l2": 0.05}, "decay": {"weight_decay": 5.0}}.items():
        m = MLP(2, (16,), seed=0)
        m.fit(X, y, epochs=20, lr=1e-2, **kw)
        norms[name] = float(np.sum(m.theta[m.decay_mask == 1] ** 2))
    assert norms["l2"] < 0.8 * norms["none"]
    assert norms["decay"] < 0.8 * norms["none"]


def test_he_and_glorot_initial_scales():
    relu = MLP(400, (300, 200), activation="relu", seed=0)
    tanh = MLP(400, (300, 200), activation="tanh", seed=0)
    assert relu.params[0][0].std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert tanh.params[0][0].std() == pytest.approx(math.sqrt(2 / 700), rel=0.02)
    assert relu.params[2][0].std() == pytest.approx(math.sqrt(2 / 201), rel=0.15)
    assert not relu.params[0][1].any()
    assert np.array_equal(MLP(5, (3,), seed=7).theta, MLP(5, (3,), seed=7).theta)


def test_schedules_follow_their_formulas():
    assert learning_rate("constant", 0.1, 7, 10) == 0.1
    assert learning_rate("step", 0.1, 9, 30, step_size=10, gamma=0.5) == 0.1
    assert learning_rate("step", 0.1, 25, 30, step_size=10, gamma=0.5) == pytest.approx(0.025)
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate("cosine", 0.1, 10, 10, lr_min=0.01) == pytest.approx(0.01)


def test_dropout_changes_training_but_not_prediction():
    X, y = _xor(300)
    a = MLP(2, (8,), seed=0, dropout=0.5)
    b = MLP(2, (8,), seed=0)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    assert not np.array_equal(a.theta, b.theta)
    assert np.array_equal(a.predict_proba(X), a.predict_proba(X))


def test_dropout_masks_drop_the_right_share_and_match_across_backends():
    from nn_core import kernels, reference

    D = reference.dropout_mask(11, 3, 1, 400, 50, 0.3, np.dtype("float64"))
    assert set(np.unique(D)) == {0.0, 1 / 0.7}
    assert (D == 0).mean() == pytest.approx(0.3, abs=0.01)
    assert D.mean() == pytest.approx(1.0, abs=0.02)
    D_kernel = np.empty_like(D)
    kernels.fill_dropout_mask(reference.dropout_key(11, 3, 1), 0.3, D_kernel)
    assert np.array_equal(D, D_kernel)
    assert not np.array_equal(
        D, reference.dropout_mask(11, 4, 1, 400, 50, 0.3, np.dtype("float64"))
    )
