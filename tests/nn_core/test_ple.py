"""The piecewise-linear encoding (``--numeric-encoding ple``): the function and its
derivative against their definition and finite differences, the fit on training rows,
preprocess.json format 3 (strict; versions 1 and 2 still load), feature names and column
slices, and the network's gradient check on encoded inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from features.tabular import Preprocessor
from nn_core import MLP, gradcheck
from nn_core.gradcheck import numerical_gradient
from nn_core.io import ModelFileError
from nn_core.preprocessing import Preprocessing, piecewise_linear, piecewise_linear_grad

EDGES = [0.0, 1.0, 3.0, 4.0, 10.0]


def _by_definition(x: float, b: list[float]) -> list[float]:
    """Gorishniy et al. (2022), equation 1: 0 left of bin t (t > 1), 1 right of it
    (t < T), the covered fraction otherwise."""
    T = len(b) - 1
    out = []
    for t in range(1, T + 1):
        if x < b[t - 1] and t > 1:
            out.append(0.0)
        elif x >= b[t] and t < T:
            out.append(1.0)
        else:
            out.append((x - b[t - 1]) / (b[t] - b[t - 1]))
    return out


@pytest.mark.parametrize("edges", [EDGES, [2.0, 5.0], [-1.0, 0.5, 7.0]])
def test_encoding_is_the_papers_definition(edges):
    x = np.r_[np.linspace(edges[0] - 3, edges[-1] + 3, 101), edges]  # outside, inside, edges
    E = piecewise_linear(x, edges)
    assert E.shape == (len(x), len(edges) - 1)
    np.testing.assert_allclose(E, [_by_definition(v, edges) for v in x], rtol=0, atol=1e-15)
    assert np.isnan(piecewise_linear(np.array([np.nan]), edges)).all()


def test_encoding_is_continuous_and_sums_to_the_bin_position():
    """Inside [b_0, b_T] the components sum to k + fraction (a monotone reading of x)."""
    x = np.linspace(0.0, 10.0, 1001)
    E = piecewise_linear(x, EDGES)
    s = E.sum(axis=1)
    assert np.all(np.diff(s) >= 0) and np.all(np.abs(np.diff(E, axis=0)) <= 0.011)
    assert s[0] == 0 and s[-1] == len(EDGES) - 1


def test_derivative_matches_finite_differences_away_from_edges():
    x = np.array([-2.0, 0.3, 0.99, 1.5, 2.2, 3.7, 4.01, 9.0, 15.0])
    analytic = piecewise_linear_grad(x, EDGES)
    for t in range(len(EDGES) - 1):
        numeric = numerical_gradient(lambda v, t=t: float(piecewise_linear(v, EDGES)[:, t].sum()),
                                     x, h=1e-3)
        np.testing.assert_allclose(analytic[:, t], numeric, rtol=0, atol=1e-9)
    # piecewise constant: the slope 1 / width where the component moves, else 0
    assert analytic[1, 0] == 1.0 and analytic[3, 1] == 0.5 and analytic[3, 0] == 0.0


def test_network_gradient_check_on_encoded_inputs():
    """The network's gradient is unchanged by the encoding (a fitted input transform); it
    passes on encoded inputs, whose columns are mostly 0 and 1."""
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=(40, 2))
    F = np.hstack([piecewise_linear(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, 5))),
                   piecewise_linear(x[:, 1], np.quantile(x[:, 1], np.linspace(0, 1, 4)))])
    y = (x[:, 0] > x[:, 1]).astype(float)
    m = MLP(F.shape[1], hidden=(5,), activation="tanh", seed=0, backend="numpy")
    report = gradcheck(m, F, y, l2=0.1)
    assert report.ok, report


def _frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.exponential(3.0, n),                       # log1p column
        "b": rng.normal(size=n),                            # plain column
        "z": np.where(rng.random(n) < 0.8, 0.0, rng.random(n)),  # mostly zeros: few edges
        "k": np.full(n, 2.0),                               # constant: no encoding
        "c": rng.choice(["x", "y"], n),
        "y": rng.integers(0, 2, n),
    })


def test_fit_uses_training_quantiles_and_merges_equal_edges():
    df = _frame()
    pre = Preprocessor(["a", "b", "z", "k"], ["c"], target="y", numeric_encoding="ple",
                       ple_bins=8).fit(df)
    cols = {c["name"]: c for c in pre.columns}
    np.testing.assert_array_equal(cols["a"]["encoding"]["edges"],
                                  np.quantile(df["a"], np.linspace(0, 1, 9)))
    assert len(cols["z"]["encoding"]["edges"]) < 9 and cols["z"]["encoding"]["edges"][0] == 0
    assert "encoding" not in cols["k"] and cols["a"]["encoding"]["value"] is False
    # fitted on the rows given: other rows do not move the edges
    other = pd.concat([df, _frame(seed=1).assign(a=1e6)], ignore_index=True)
    assert Preprocessor(["a"], [], numeric_encoding="ple", ple_bins=8).fit(df).columns[0] \
        == {k: v for k, v in cols["a"].items()}
    assert Preprocessor(["a"], [], numeric_encoding="ple", ple_bins=8).fit(other).columns[0] \
        != cols["a"]


def test_block_layout_names_and_slices():
    df = _frame()
    for encoding, value in (("ple", False), ("standard+ple", True)):
        pre = Preprocessor(["a", "b", "k"], ["c"], target="y", numeric_encoding=encoding,
                           ple_bins=4).fit(df)
        F = pre.transform(df)
        names = pre.feature_names
        slices = pre.column_slices()
        assert F.shape[1] == pre.n_features == len(names)
        assert list(slices) == ["a", "b", "k", "c"]
        assert slices["a"].start == 0 and slices["c"].stop == F.shape[1]
        assert all(slices[p].stop == slices[q].start for p, q in zip("abk", "bkc", strict=True))
        a = F[:, slices["a"]]
        assert names[slices["a"]][value:] == [f"a[ple {t}]" for t in range(1, 5)]
        np.testing.assert_array_equal(a[:, value:], piecewise_linear(
            df["a"].to_numpy(), pre.columns[0]["encoding"]["edges"]))
        assert names[slices["k"]] == ["log1p(k)"]  # constant: its z alone, no encoding
        if value:
            plain = Preprocessor(["a", "b", "k"], ["c"], target="y").fit(df).transform(df)
            np.testing.assert_array_equal(a[:, 0], plain[:, 0])
            assert names[0] == "log1p(a)"


def test_preprocess_json_round_trip_and_versions(tmp_path):
    df = _frame()
    pre = Preprocessor(["a", "b"], ["c"], target="y", numeric_encoding="ple", ple_bins=6,
                       impute=True).fit(df)
    doc = json.loads(json.dumps(pre.to_dict()))
    assert doc["format_version"] == 3
    back = Preprocessing.from_dict(doc)
    np.testing.assert_array_equal(back.transform(df), pre.transform(df))
    assert back.feature_names == pre.feature_names
    plain = Preprocessor(["a"], ["c"], target="y").fit(df).to_dict()
    assert plain["format_version"] == 1 and Preprocessing.from_dict(plain).n_features == 4


def _doc(encoding, version=3):
    return {"format": "purchase-propensity-preprocess", "format_version": version, "columns": [
        {"name": "a", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0,
         **({"encoding": encoding} if encoding is not None else {})}]}


GOOD = {"kind": "piecewise_linear", "edges": [0.0, 1.0, 2.5], "value": False}


@pytest.mark.parametrize(("doc", "message"), [
    (_doc(GOOD, version=2), "'encoding' needs format_version 3"),
    (_doc(None), "format_version 3 but no column has 'encoding'"),
    (_doc({**GOOD, "edges": [0.0, 2.0, 2.0]}), "strictly increasing"),
    (_doc({**GOOD, "edges": [1.0]}), "at least 2"),
    (_doc({**GOOD, "edges": [0.0, math.inf]}), "finite"),
    (_doc({**GOOD, "edges": [0.0, True]}), "'encoding' must be"),
    (_doc({**GOOD, "value": 1}), "'encoding' must be"),
    (_doc({**GOOD, "kind": "periodic"}), "'encoding' must be"),
    (_doc({**GOOD, "extra": 1}), "'encoding' must be"),
    (_doc([0.0, 1.0]), "'encoding' must be"),
    ({"format": "purchase-propensity-preprocess", "format_version": 3, "columns": [
        {"name": "c", "kind": "categorical", "categories": ["x"], "encoding": GOOD}]},
     "in a numeric column"),
])
def test_malformed_encoding_is_refused(doc, message):
    with pytest.raises(ModelFileError, match=r"preprocess.json: (columns\[0\]|format_version)"
                       ) as info:
        Preprocessing.from_dict(doc)
    assert message in str(info.value)
    assert Preprocessing.from_dict(_doc(GOOD)).n_features == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"numeric_encoding": "periodic"}, "numeric_encoding must be one of"),
    ({"numeric_encoding": "ple", "ple_bins": 0}, "ple_bins must be an integer"),
    ({"numeric_encoding": "ple", "ple_bins": 2.5}, "ple_bins must be an integer"),
])
def test_bad_encoding_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(["a"], [], **kwargs)


# --------------------------------------------------------------------------- tree bins


def test_tree_edges_find_the_steps_of_the_label():
    """y = 1 on (3, 7) only: two cuts, at the steps, and no more (the leaves are pure)."""
    from features.tabular import tree_edges

    x = np.random.default_rng(0).uniform(0, 10, 4000)
    y = ((x > 3) & (x < 7)).astype(float)
    edges = tree_edges(x, y, 8)
    assert len(edges) == 4 and edges[0] == x.min() and edges[-1] == x.max()
    assert abs(edges[1] - 3) < 0.01 and abs(edges[2] - 7) < 0.01


def test_tree_first_cut_is_the_exhaustive_best_and_leaves_keep_min_leaf():
    from features.tabular import tree_edges

    rng = np.random.default_rng(5)
    x = np.round(rng.exponential(2.0, 600), 1)  # ties: cuts only between distinct values
    y = (rng.random(600) < 1 / (1 + np.exp(2 - x))).astype(float)

    def sse(mask):
        return float(((y[mask] - y[mask].mean()) ** 2).sum()) if mask.any() else 0.0

    values = np.unique(x)
    cuts = (values[:-1] + values[1:]) / 2
    allowed = [c for c in cuts if min((x < c).sum(), (x >= c).sum()) >= 30]
    best = min(allowed, key=lambda c: sse(x < c) + sse(x >= c))
    first = tree_edges(x, y, 2, min_leaf=30)
    assert len(first) == 3 and first[1] == pytest.approx(best)
    edges = tree_edges(x, y, 12, min_leaf=30)
    assert 3 <= len(edges) <= 13
    counts = np.histogram(x, bins=edges)[0]
    assert counts.min() >= 30 and counts.sum() == len(x)
    assert len(tree_edges(np.full(50, 2.0), y[:50], 8)) == 1  # constant: no cut


def test_tree_binning_fits_the_labels_of_the_rows():
    df = _frame()
    df["y"] = (df["a"] > 4).astype(int)
    pre = Preprocessor(["a", "b"], ["c"], target="y", numeric_encoding="ple", ple_bins=4,
                       ple_binning="tree").fit(df)
    edges = pre.columns[0]["encoding"]["edges"]
    assert any(abs(b - 4) < 0.2 for b in edges[1:-1])  # a cut at the label's step
    again = Preprocessor(["a", "b"], ["c"], numeric_encoding="ple", ple_bins=4,
                         ple_binning="tree").fit(df.drop(columns="y"), df["y"])
    assert again.columns == pre.columns
    with pytest.raises(ValueError, match="needs the labels"):
        Preprocessor(["a"], [], numeric_encoding="ple", ple_binning="tree").fit(df[["a"]])
    with pytest.raises(ValueError, match="ple_binning must be one of"):
        Preprocessor(["a"], [], ple_binning="kmeans")
