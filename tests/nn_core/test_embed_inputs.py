"""Ensemble members trained on a subset of the columns (nn_core.ensemble.embed_inputs,
nn_core.selection.train_and_evaluate's column_sets): the widened network is the member."""

from __future__ import annotations

import numpy as np
import pytest

from nn_core import MLP
from nn_core.ensemble import Ensemble, embed_inputs, member_seed
from nn_core.selection import NetConfig, train_and_evaluate, train_network


def _trained(d: int, hidden, dtype: str, seed: int = 3) -> MLP:
    """A network of d inputs with trained (not initial) weights: two epochs on noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, d))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(np.int8)
    net = MLP(d, hidden, dtype=dtype, seed=seed)
    net.fit(X.astype(dtype), y, epochs=2, batch_size=32, lr=1e-2)
    return net


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("hidden", [(8,), (6, 4), ()])
def test_the_widened_network_on_all_columns_is_the_member_on_its_own(dtype, tol, hidden):
    """The same function up to the rounding of sums taken in another order (the zero rows
    add exact zeros): logits and probabilities within a few units of the dtype's last
    place of the logit's size."""
    d, cols = 11, np.array([9, 0, 4, 5, 2])  # any order: row j of W feeds from X[:, cols[j]]
    net = _trained(len(cols), hidden, dtype)
    wide = embed_inputs(net, cols, d)
    X = np.random.default_rng(7).normal(scale=3.0, size=(2000, d)).astype(dtype)
    z_member = Ensemble([(net, 1.0), (net, 0.0)]).member_logits(X[:, cols])[:, 0]
    z_wide = Ensemble([(wide, 1.0), (wide, 0.0)]).member_logits(X)[:, 0]
    assert np.std(z_member) > 0.5  # a function of the inputs, not a constant
    np.testing.assert_allclose(z_wide, z_member, rtol=tol, atol=tol)
    np.testing.assert_allclose(wide.predict_proba(X), net.predict_proba(X[:, cols]), rtol=0,
                               atol=tol)
    (W_wide, b_wide), *rest_wide = wide.get_weights()
    (W, b), *rest = net.get_weights()
    others = np.setdiff1d(np.arange(d), cols)
    assert W_wide.shape == (d, W.shape[1]) and W_wide.dtype == np.dtype(dtype)
    assert np.array_equal(W_wide[cols], W) and not W_wide[others].any()
    assert np.array_equal(b_wide, b)
    for (Wa, ba), (Wb, bb) in zip(rest_wide, rest, strict=True):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)
    assert (wide.hidden, wide.dtype, wide.seed) == (net.hidden, net.dtype, net.seed)


@pytest.mark.parametrize("cols, message", [
    (np.array([0, 1]), "3 integer column indices"),
    (np.array([0.0, 1.0, 2.0]), "integer column indices"),
    (np.array([0, 1, 1]), "distinct indices"),
    (np.array([0, 1, 5]), r"distinct indices in \[0, 5\)"),
    (np.array([-1, 1, 2]), "distinct indices"),
])
def test_bad_column_sets_are_refused(cols, message):
    with pytest.raises(ValueError, match=message):
        embed_inputs(MLP(3, (4,)), cols, 5)


def _split(d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = {k: rng.normal(size=(n, d)).astype(np.float32)
         for k, n in (("train", 240), ("dev", 120), ("test", 120))}
    y = {k: (v[:, 0] - v[:, 4] + rng.normal(size=len(v)) > 0).astype(np.int8)
         for k, v in X.items()}
    return X, y


def test_member_k_is_trained_on_column_set_k_mod_v_alone():
    X, y = _split()
    cfg = NetConfig(hidden=(5,), epochs=3, batch_size=32, lr=1e-2, threads=1)
    sets = [np.arange(6), np.array([0, 2, 3])]
    run = train_and_evaluate(cfg, cfg, X, y, X, seed=4, ensemble=3, column_sets=sets)
    nets = [m for m, _ in run.model.members]
    assert [m.n_inputs for m in nets] == [6, 6, 6]
    assert [m.seed for m in nets] == [member_seed(4, k) for k in range(3)]
    # member 1: a network of 3 inputs trained on X[:, [0, 2, 3]] with its seed, widened
    alone, history, _ = train_network(cfg, {k: X[k][:, sets[1]] for k in X}, y,
                                      member_seed(4, 1))
    (W1, _), *_ = nets[1].get_weights()
    (W, _), *_ = alone.get_weights()
    assert np.array_equal(W1[sets[1]], W) and not W1[[1, 4, 5]].any()
    assert run.member_histories[0] == history
    # members 0 and 2 (the first set: every column) are trained as without column sets
    plain = train_and_evaluate(cfg, cfg, X, y, X, seed=4, ensemble=3)
    for k in (0, 2):
        for a, b in zip(nets[k].get_weights(), plain.model.members[k][0].get_weights(),
                        strict=True):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_more_column_sets_than_members_is_refused():
    X, y = _split()
    cfg = NetConfig(hidden=(5,), epochs=1)
    with pytest.raises(ValueError, match="3 column sets for 2 members"):
        train_and_evaluate(cfg, cfg, X, y, X, seed=0, ensemble=2,
                           column_sets=[np.arange(3)] * 3)
