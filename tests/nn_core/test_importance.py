"""nn_core/importance.py: planted signal ranks first, a column's features move together (the
same as shuffling the raw column), and the numbers agree with scikit-learn's."""

import numpy as np
import pandas as pd
import pytest

from nn_core.importance import permutation_importance


def _planted(n=3000, seed=0):
    """A table whose label depends on ``strong`` (a lot) and ``weak`` (a little), through a
    logistic model; ``noise1``, ``noise2`` and ``c`` do not matter."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"noise1": rng.normal(size=n), "strong": rng.normal(size=n),
                          "noise2": rng.normal(size=n), "weak": rng.normal(size=n),
                          "c": rng.choice(["a", "b", "c"], size=n)})
    z = 2.5 * frame["strong"] + 0.8 * frame["weak"] - 1.0
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return frame


def test_planted_columns_rank_first_for_a_trained_network():
    from features.tabular import Preprocessor
    from nn_core import MLP

    frame = _planted()
    train, dev = frame.iloc[:2000], frame.iloc[2000:]
    pre = Preprocessor(["noise1", "strong", "noise2", "weak"], ["c"], target="y").fit(train)
    net = MLP(pre.n_features, hidden=(8,), dtype="float64", backend="numpy", seed=0)
    net.fit(pre.transform(train), train["y"].to_numpy(), epochs=15, batch_size=64, lr=1e-2)
    imp = permutation_importance(net.predict_proba, pre.transform(dev), dev["y"].to_numpy(),
                                 pre.column_slices(), n_repeats=5, seed=0)
    assert imp.columns[:2] == ["strong", "weak"]
    assert imp.mean[0] > 0.2 and imp.mean[1] > 0.02
    assert np.all(np.abs(imp.mean[2:]) < 0.01)  # the noise columns and the category
    assert imp.drops.shape == (5, 5) and np.all(imp.std >= 0)
    rows = imp.rows("mlp")
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and rows[0]["column"] == "strong"


def test_a_group_moves_together_as_the_raw_column_shuffled_before_preprocessing():
    """Permuting the rows of a column's feature block (its one-hot block) gives exactly the
    AUC of shuffling the raw column and preprocessing again, with the same permutation."""
    from features.tabular import Preprocessor
    from nn_core.metrics import roc_auc

    frame = _planted(600, seed=1)
    frame["c"] = np.where(frame["strong"] > 0.5, "a", np.where(frame["strong"] < -0.5,
                                                                "b", "c"))
    pre = Preprocessor(["noise1", "weak"], ["c"], target="y").fit(frame)
    w = np.random.default_rng(2).normal(size=pre.n_features)

    def score(X):
        return X @ w

    y = frame["y"].to_numpy()
    X = pre.transform(frame)
    imp = permutation_importance(score, X, y, pre.column_slices(), n_repeats=3, seed=7)
    rng = np.random.default_rng(7)
    perms = [rng.permutation(len(X)) for _ in range(3)]
    base = roc_auc(y, score(X))
    for name in ("c", "weak"):
        shuffled = [base - roc_auc(y, score(pre.transform(
            frame.assign(**{name: frame[name].to_numpy()[perm]})))) for perm in perms]
        np.testing.assert_allclose(imp.drops[imp.columns.index(name)], shuffled, rtol=0,
                                   atol=1e-12)


@pytest.mark.slow  # importing scikit-learn takes about 1.5 s
def test_agrees_with_scikit_learn():
    """One column per group: the same ranking as sklearn.inspection.permutation_importance
    (other permutations), and mean drops within a few standard errors of each other."""
    inspection = pytest.importorskip("sklearn.inspection")
    from nn_core.metrics import roc_auc

    frame = _planted(2000, seed=3)
    X = frame[["noise1", "strong", "noise2", "weak"]].to_numpy()
    y = frame["y"].to_numpy()
    w = np.array([0.0, 2.5, 0.0, 0.8])

    class Fixed:  # a fitted model for sklearn: the planted logit
        def fit(self, X, y):
            return self

        def predict_proba(self, X):
            p = 1 / (1 + np.exp(-(X @ w)))
            return np.c_[1 - p, p]

    ours = permutation_importance(lambda X_: X_ @ w, X, y, {f"x{j}": [j] for j in range(4)},
                                  n_repeats=20, seed=0)
    theirs = inspection.permutation_importance(
        Fixed(), X, y, scoring=lambda m, X_, y_: roc_auc(y_, m.predict_proba(X_)[:, 1]),
        n_repeats=20, random_state=0)
    order = np.argsort(-theirs.importances_mean, kind="stable")
    assert ours.columns[:2] == [f"x{j}" for j in order[:2]] == ["x1", "x3"]
    for name, mean, std in zip(ours.columns, ours.mean, ours.std, strict=True):
        j = int(name[1:])
        se = np.hypot(std, theirs.importances_std[j]) / np.sqrt(20)
        assert abs(mean - theirs.importances_mean[j]) <= 4 * se + 1e-12


def test_bad_arguments():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(lambda X_: X_[:, 0], X, y, {"a": [0]}, n_repeats=0)
    with pytest.raises(ValueError, match="no column groups"):
        permutation_importance(lambda X_: X_[:, 0], X, y, {})
    with pytest.raises(ValueError, match="X must be"):
        permutation_importance(lambda X_: X_[:, 0], X[:3], y, {"a": [0]})
