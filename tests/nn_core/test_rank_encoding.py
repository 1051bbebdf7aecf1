"""The Gaussian-rank encoding (``--numeric-encoding quantile`` and the encodings with it):
the fitted knots, scores and ends and the transform against a direct implementation of the
definition (ties, a constant column, values at and beyond the outer knots: scikit-learn's
end rule, missing values), the block
layout and feature names, preprocess.json format 4 (round trip, strict checks, refused by a
version-3 reader), and the fit's arguments."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from old_source import module_at

from features.tabular import Preprocessor, gaussian_rank_knots
from nn_core.io import ModelFileError
from nn_core.preprocessing import NUMERIC_ENCODINGS, Preprocessing, gaussian_rank

#: The last commit whose reader knows format versions 1 to 3 only.
V3_COMMIT = "16253c1"


def _knots_by_definition(x, K):
    """q_j = quantile(x, j / (K - 1)); equal knots merged at the mean of their r_j; score
    Phi^-1(r) clipped to [Phi^-1(1e-7), Phi^-1(1 - 1e-7)] (the standard library's normal)."""
    r = [j / (K - 1) for j in range(K)]
    q = [float(np.quantile(x, rj)) for rj in r]
    runs: dict[float, list[float]] = {}
    for qj, rj in zip(q, r, strict=True):
        runs.setdefault(qj, []).append(rj)
    phi_inv = NormalDist().inv_cdf
    lo, hi = phi_inv(1e-7), phi_inv(1 - 1e-7)
    knots = sorted(runs)
    scores = []
    for k in knots:
        level = sum(runs[k]) / len(runs[k])
        scores.append(lo if level <= 1e-7 else hi if level >= 1 - 1e-7
                      else min(max(phi_inv(level), lo), hi))
    ends = [lo, hi] if len(knots) > 1 else [scores[0], scores[0]]
    return knots, scores, ends


def _g_by_definition(v, q, s, ends):
    """lo at or below q_1, hi at or above q_m, linear interpolation of (q_j, s_j) between."""
    if math.isnan(v):
        return math.nan
    if v <= q[0]:
        return ends[0]
    if v >= q[-1]:
        return ends[1]
    j = max(i for i in range(len(q)) if q[i] <= v)
    return s[j] + (v - q[j]) * (s[j + 1] - s[j]) / (q[j + 1] - q[j])


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.exponential(3.0, n),                                  # log1p column
        "z": np.where(rng.random(n) < 0.7, 0.0, np.round(rng.random(n), 2)),  # ties
        "k": np.full(n, 2.0),                                          # constant
        "c": rng.choice(["x", "y"], n),
        "y": rng.integers(0, 2, n),
    })


@pytest.mark.parametrize("K", [2, 5, 64, 1000])
@pytest.mark.parametrize("column", ["a", "z", "k"])
def test_knots_and_scores_are_the_definition(column, K):
    x = _frame()[column].to_numpy()
    q, s, ends = gaussian_rank_knots(x, K)
    q_def, s_def, ends_def = _knots_by_definition(x, K)
    np.testing.assert_allclose(q, q_def, rtol=1e-13, atol=0)  # r_j rounded another way
    np.testing.assert_allclose(s, s_def, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ends, ends_def, rtol=0, atol=1e-9)
    assert np.all(np.diff(q) > 0) and np.all(np.diff(s) >= 0)
    assert q[0] == x.min() and q[-1] == x.max() and np.max(np.abs(s)) <= 5.2
    assert ends[0] <= s[0] and ends[1] >= s[-1]
    if column == "k":  # a constant column: one knot at the median level, score 0
        assert len(q) == 1 and s[0] == 0.0 and list(ends) == [s[0], s[0]]
    else:  # scikit-learn's clip bounds
        np.testing.assert_allclose(ends, [-5.199337582, 5.199337582], rtol=0, atol=1e-8)


def test_ties_merge_at_their_mean_level():
    """70 % zeros: one knot at 0 whose level is the mean r of the knots that fell on 0."""
    x = np.r_[np.zeros(70), np.arange(1, 31, dtype=float)]
    q, s, _ = gaussian_rank_knots(x, 11)  # r = 0, 0.1, ..., 1.0: r <= 0.6 all fall on 0
    assert q[0] == 0.0 and q[1] > 0
    assert s[0] == pytest.approx(NormalDist().inv_cdf(0.3), abs=1e-12)  # mean of 0..0.6


@pytest.mark.parametrize("column", ["a", "z", "k"])
def test_transform_is_the_definition_inside_and_outside_the_knots(column):
    x = _frame()[column].to_numpy()
    q, s, ends = gaussian_rank_knots(x, 50)
    probe = np.r_[x[:50], q, (q[:-1] + q[1:]) / 2, q[0] - 1.0, q[-1] + 1e6, -1e300, np.nan]
    g = gaussian_rank(probe, q, s, ends)
    expected = [_g_by_definition(v, list(q), list(s), list(ends)) for v in probe]
    np.testing.assert_allclose(g, expected, rtol=0, atol=1e-12)
    assert np.isnan(g[-1])
    at_knots = gaussian_rank(q, q, s, ends)  # the inner knots: their scores; the outer: ends
    np.testing.assert_array_equal(at_knots[1:-1], s[1:-1])
    assert at_knots[0] == ends[0] and at_knots[-1] == ends[1]


def test_the_end_rule_at_and_beyond_the_outer_knots():
    """scikit-learn's rule: lo at q_1 and below, hi at q_m and above, exactly (no
    tolerance); just inside, the interpolation from s_1 / s_m, so g jumps at q_1 and q_m."""
    q, s, ends = [0.0, 1.0, 3.0], [-0.6, 0.2, 1.1], [-5.2, 5.2]
    after, before = np.nextafter(0.0, 1.0), np.nextafter(3.0, 0.0)
    x = np.array([0.0, after, 1e-3, 1.0, 2.0, before, 3.0, -1e-300, -7.0, 3.0 + 1e-12, 1e9])
    g = gaussian_rank(x, q, s, ends)
    np.testing.assert_allclose(g, [-5.2, -0.6, -0.6 + 1e-3 * 0.8, 0.2, 0.65, 1.1, 5.2,
                                   -5.2, -5.2, 5.2, 5.2], rtol=0, atol=1e-12)
    assert g[1] - g[0] > 4 and g[6] - g[5] > 4  # the jumps at q_1 and q_m
    # two knots: only the ends and one segment
    g2 = gaussian_rank(np.array([0.0, 0.5, 1.0, -1.0, 2.0, np.nan]), [0.0, 1.0], [-1.0, 1.0],
                       [-5.0, 5.0])
    np.testing.assert_allclose(g2[:5], [-5.0, 0.0, 5.0, -5.0, 5.0], rtol=0, atol=0)
    assert np.isnan(g2[5])
    # one knot (a constant column): lo = hi = s_1 everywhere, NaN stays NaN
    g1 = gaussian_rank(np.array([-1.0, 2.0, 3.0, np.nan]), [2.0], [0.0], [0.0, 0.0])
    np.testing.assert_array_equal(g1[:3], [0.0, 0.0, 0.0])
    assert np.isnan(g1[3])


def test_the_fitted_end_rule_matches_scikit_learn_at_the_training_extremes():
    """A column that is 0 in 70 % of the rows: every 0 gets Phi^-1(1e-7), as scikit-learn's
    QuantileTransformer(output_distribution="normal") gives it, not the run's -0.52."""
    sklearn = pytest.importorskip("sklearn.preprocessing")
    x = _frame()["z"].to_numpy()
    q, s, ends = gaussian_rank_knots(x, 16)
    g = gaussian_rank(x, q, s, ends)
    ref = sklearn.QuantileTransformer(n_quantiles=16, output_distribution="normal").fit(
        x[:, None]).transform(x[:, None])[:, 0]
    at_ends = (x == x.min()) | (x == x.max())
    assert at_ends.mean() > 0.7
    np.testing.assert_allclose(g[at_ends], ref[at_ends], rtol=0, atol=1e-6)
    assert s[0] > -1.0 and np.all(g[x == 0] == ends[0])


@pytest.mark.parametrize("encoding", [e for e, parts in NUMERIC_ENCODINGS.items() if parts.rank])
def test_block_layout_names_and_values(encoding):
    df = _frame()
    parts = NUMERIC_ENCODINGS[encoding]
    pre = Preprocessor(["a", "z", "k"], ["c"], target="y", numeric_encoding=encoding,
                       ple_bins=4, rank_knots=64).fit(df)
    F, names, slices = pre.transform(df), pre.feature_names, pre.column_slices()
    assert F.shape[1] == pre.n_features == len(names)
    for name in ("a", "z", "k"):
        c = next(c for c in pre.columns if c["name"] == name)
        block = names[slices[name]]
        rank_at = int(parts.value)
        assert block[rank_at] == f"{name}[rank]"
        if parts.value:
            assert block[0] in (name, f"log1p({name})")
        assert block[rank_at + 1:] == [f"{name}[ple {t}]" for t in range(1, len(block)
                                                                          - rank_at)]
        assert (len(block) - rank_at - 1 > 0) == (parts.ple and name != "k")  # k: no bins
        np.testing.assert_array_equal(
            F[:, slices[name].start + rank_at],
            gaussian_rank(df[name].to_numpy(), c["encoding"]["knots"], c["encoding"]["scores"],
                          c["encoding"]["ends"]))
    plain = Preprocessor(["a", "z", "k"], ["c"], target="y").fit(df).transform(df)
    if parts.value:  # z is the standard encoding's
        np.testing.assert_array_equal(F[:, 0], plain[:, 0])
    np.testing.assert_array_equal(F[:, slices["c"]], plain[:, 3:])


def test_the_fit_uses_the_rows_given_and_raw_values():
    df = _frame()
    pre = Preprocessor(["a"], [], numeric_encoding="quantile", rank_knots=20).fit(df)
    c = pre.columns[0]
    assert c["log1p"] and c["encoding"]["kind"] == "gaussian_rank" and not c["encoding"]["value"]
    q, s, ends = gaussian_rank_knots(df["a"].to_numpy(), 20)  # raw x, not log1p(x)
    assert c["encoding"]["knots"] == q.tolist() and c["encoding"]["scores"] == s.tolist()
    assert c["encoding"]["ends"] == ends.tolist()
    other = Preprocessor(["a"], [], numeric_encoding="quantile", rank_knots=20).fit(
        pd.concat([df, df.assign(a=df["a"] + 100)]))
    assert other.columns[0]["encoding"]["knots"] != c["encoding"]["knots"]


def test_missing_values_take_the_rank_of_the_imputed_value():
    df = _frame()
    df["a"] = df["a"].astype(object)
    df.loc[[3, 10, 50], "a"] = ""
    pre = Preprocessor(["a", "z"], ["c"], target="y", numeric_encoding="standard+quantile",
                       rank_knots=32, impute=True).fit(df)
    c = pre.columns[0]
    F = pre.transform(df)
    median = c["impute"]["value"]
    g = gaussian_rank(np.array([median]), c["encoding"]["knots"], c["encoding"]["scores"],
                      c["encoding"]["ends"])[0]
    assert np.all(F[[3, 10, 50], 1] == g)
    assert pre.feature_names[:3] == ["log1p(a)", "a[rank]", "missing(a)"]
    assert np.array_equal(F[:, 2], np.isin(np.arange(len(df)), [3, 10, 50]))
    # the knots are fitted on the imputed column (the values the network sees)
    x = pd.to_numeric(df["a"], errors="coerce").fillna(median).to_numpy()
    assert c["encoding"]["knots"] == gaussian_rank_knots(x, 32)[0].tolist()


def test_preprocess_json_round_trip_is_format_4():
    df = _frame()
    pre = Preprocessor(["a", "z", "k"], ["c"], target="y",
                       numeric_encoding="standard+quantile+ple", ple_bins=4).fit(df)
    doc = json.loads(json.dumps(pre.to_dict()))
    assert doc["format_version"] == 4
    assert doc["columns"][0]["encoding"]["kind"] == "gaussian_rank+piecewise_linear"
    back = Preprocessing.from_dict(doc)
    np.testing.assert_array_equal(back.transform(df), pre.transform(df))
    assert back.feature_names == pre.feature_names and back.columns == pre.columns
    ple = Preprocessor(["a"], [], numeric_encoding="standard+ple").fit(df).to_dict()
    assert ple["format_version"] == 3  # without a rank, version-3 readers still read it


def _doc(encoding, version=4):
    return {"format": "purchase-propensity-preprocess", "format_version": version, "columns": [
        {"name": "a", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0,
         **({"encoding": encoding} if encoding is not None else {})}]}


GOOD = {"kind": "gaussian_rank", "value": False, "knots": [0.0, 1.0, 2.5],
        "scores": [-1.0, 0.0, 1.5], "ends": [-5.0, 5.0]}
ONE = {"kind": "gaussian_rank", "value": False, "knots": [2.0], "scores": [0.0],
       "ends": [0.0, 0.0]}
BOTH = {**GOOD, "kind": "gaussian_rank+piecewise_linear", "edges": [0.0, 1.0]}


@pytest.mark.parametrize(("doc", "message"), [
    (_doc(GOOD, version=3), "'encoding' of kind 'gaussian_rank' needs format_version 4"),
    (_doc(BOTH, version=3), "needs format_version 4"),
    (_doc(GOOD, version=2), "'encoding' needs format_version 3 or 4"),
    (_doc(None), "format_version 4 but no column has a Gaussian-rank 'encoding'"),
    (_doc({"kind": "piecewise_linear", "edges": [0.0, 1.0], "value": True}),
     "format_version 4 but no column has a Gaussian-rank"),
    (_doc({**GOOD, "knots": [0.0, 1.0, 1.0]}), "knots strictly increasing"),
    (_doc({**GOOD, "knots": [0.0, 2.0, 1.0]}), "knots strictly increasing"),
    (_doc({**GOOD, "scores": [0.0, -1.0, 1.0]}), "scores non-decreasing"),
    (_doc({**GOOD, "scores": [0.0, 1.0]}), "'encoding' must be"),  # lengths differ
    (_doc({**GOOD, "knots": [], "scores": []}), "1 to 4096 finite numbers"),
    (_doc({**GOOD, "knots": [0.0, math.nan, 2.0]}), "finite"),
    (_doc({**GOOD, "scores": [0.0, math.inf, math.inf]}), "finite"),
    (_doc({**GOOD, "knots": [0.0, 5e-324, 1.0], "scores": [0.0, 1.0, 2.0]}), "'encoding' must"),
    (_doc({**GOOD, "knots": [0.0, True, 2.0]}), "'encoding' must be"),
    (_doc({**GOOD, "knots": [0, 1, 10**400]}), "finite"),  # beyond float: no OverflowError
    (_doc({**GOOD, "ends": [-10**400, 5.0]}), "'encoding' must be"),
    (_doc({**GOOD, "knots": list(range(4097)), "scores": [0.0] * 4097}), "1 to 4096"),
    (_doc({**GOOD, "edges": [0.0, 1.0]}), "'encoding' must be"),  # edges of another kind
    (_doc({k: v for k, v in BOTH.items() if k != "edges"}), "'encoding' must be"),
    (_doc({**GOOD, "kind": "rank"}), "'encoding' must be"),
    (_doc({**GOOD, "value": "no"}), "'encoding' must be"),
    (_doc({**GOOD, "extra": 1}), "'encoding' must be"),
    (_doc({k: v for k, v in GOOD.items() if k != "ends"}), "'encoding' must be"),
    (_doc({**GOOD, "ends": [-5.0]}), "\"ends\" (2 finite numbers"),
    (_doc({**GOOD, "ends": [-5.0, 5.0, 6.0]}), "'encoding' must be"),
    (_doc({**GOOD, "ends": [-5.0, math.inf]}), "'encoding' must be"),
    (_doc({**GOOD, "ends": [-5.0, math.nan]}), "'encoding' must be"),
    (_doc({**GOOD, "ends": [-5.0, "5"]}), "'encoding' must be"),
    (_doc({**GOOD, "ends": "-5, 5"}), "'encoding' must be"),
    (_doc({**GOOD, "ends": [-0.5, 5.0]}), "lo <= s_1"),  # above s_1 = -1
    (_doc({**GOOD, "ends": [-5.0, 1.0]}), "hi >= s_m"),  # below s_m = 1.5
    (_doc({**ONE, "ends": [-5.0, 5.0]}), "lo = hi = s_1 for one knot"),
    (_doc({**ONE, "ends": [0.0, 1.0]}), "'encoding' must be"),
])
def test_a_damaged_rank_encoding_is_refused_in_one_line(doc, message):
    with pytest.raises(ModelFileError, match=r"preprocess.json: (columns\[0\] \('a'\)|format_"
                                             r"version)") as info:
        Preprocessing.from_dict(doc)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert Preprocessing.from_dict(_doc(GOOD)).n_features == 1
    assert Preprocessing.from_dict(_doc(BOTH)).n_features == 2
    assert Preprocessing.from_dict(_doc(ONE)).n_features == 1


def test_a_version_3_reader_refuses_format_4(tmp_path):
    """The reader as it was before format 4 (commit V3_COMMIT) refuses a version-4 file
    rather than score it wrongly."""
    old = module_at(V3_COMMIT)
    doc = Preprocessor(["a"], ["c"], numeric_encoding="quantile").fit(_frame()).to_dict()
    with pytest.raises(ModelFileError, match="unsupported format_version 4"):
        old.Preprocessing.from_dict(json.loads(json.dumps(doc)))
    assert old.Preprocessing.from_dict(Preprocessor(["a"], ["c"], numeric_encoding="ple")
                                       .fit(_frame()).to_dict()).n_features == 19


def test_the_encodings_by_name():
    assert list(NUMERIC_ENCODINGS) == ["standard", "ple", "standard+ple", "quantile",
                                       "quantile+ple", "standard+quantile",
                                       "standard+quantile+ple"]
    for name, parts in NUMERIC_ENCODINGS.items():  # the name lists the parts, in order
        spelled = [p for p, on in zip(("standard", "quantile", "ple"),
                                      (parts.value, parts.rank, parts.ple), strict=True) if on]
        assert "+".join(spelled) == name


@pytest.mark.parametrize("value", [1, 4097, 2.5, True, "64"])
def test_bad_rank_knots_are_refused(value):
    with pytest.raises(ValueError, match=r"rank_knots must be an integer in \[2, 4096\]"):
        Preprocessor(["a"], [], numeric_encoding="quantile", rank_knots=value)


def test_knots_beyond_float32_are_refused_at_export():
    """A valid file (float64) whose knots float32 cannot hold: every exported predictor
    computes in float32, so the export is refused in one line naming the column (the C
    would not compile, ``-inf`` literals, or would score a valid row NaN)."""
    from nn_core.export.model import ExportError, build_inputs

    doc = _doc({**GOOD, "knots": [-1e39, -1e38, 0.0]})
    columns = [dict(c) for c in Preprocessing.from_dict(doc).columns]
    with pytest.raises(ExportError, match=r"column 'a': knots value -1e\+39 is beyond float32"):
        build_inputs(columns, 1, "m/preprocess.json")
    assert len(build_inputs([dict(c) for c in Preprocessing.from_dict(_doc(GOOD)).columns], 1,
                            "m/preprocess.json")) == 1
