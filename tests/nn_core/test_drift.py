"""nn_core/drift.py: PSI from its definition, quantile bins with ties, the reference file
(strictly read, old directories without it), and counts that add up chunk by chunk."""

import json
import math

import numpy as np
import pytest

from nn_core import drift
from nn_core.io import ModelFileError


def test_psi_known_values():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3), rel=1e-12)
    assert drift.psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3), rel=1e-12)
    assert drift.psi([3, 1, 6], [3, 1, 6]) == 0.0
    assert drift.psi([1, 2], [3, 1]) == pytest.approx(drift.psi([3, 1], [1, 2]))  # symmetric
    # an empty bin counts with the proportion epsilon, not 0
    eps = drift.EPSILON
    expected = (0.5 - 1) * math.log(0.5 / 1) + (0.5 - eps) * math.log(0.5 / eps)
    assert drift.psi([1, 0], [1, 1]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        drift.psi([1, 1], [1, 1, 1])
    with pytest.raises(ValueError):
        drift.psi([0, 0], [1, 1])


def test_quantile_edges_merge_ties_and_keep_a_tie_mass_in_one_bin():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(1000) < 0.78, 0.0, rng.exponential(20.0, 1000))  # as PageValues
    edges = drift.quantile_edges(x, 10)
    assert edges[0] == 0.0 and np.all(np.diff(edges) > 0) and len(edges) < 9
    counts = drift.bin_counts(x, edges)
    assert counts[0] == np.count_nonzero(x == 0)  # (-inf, 0] holds every zero
    assert counts.sum() == 1000 and counts[-1] == 0  # no missing value
    const = drift.quantile_edges(np.full(50, 3.5))
    assert const.tolist() == [3.5]
    assert drift.bin_counts(np.array([3.5, 3.6, np.nan]), const).tolist() == [1, 1, 1]
    assert drift.bin_labels([0.0, 12.5]) == ["(-inf, 0]", "(0, 12.5]", "(12.5, inf)",
                                             drift.MISSING]


COLUMNS = [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical",
                                              "categories": ["a", "b", "c"]}]


def _inputs(rng, n, shift=0.0, c_probs=(0.5, 0.3, 0.2)):
    U = np.empty((n, 2))
    U[:, 0] = rng.normal(shift, 1.0, n)
    U[:, 1] = rng.choice(3, size=n, p=c_probs)
    return U


def test_monitor_chunked_equals_one_chunk_and_flags_the_shifted_column():
    rng = np.random.default_rng(1)
    U_train, p_train = _inputs(rng, 2000), rng.random(2000)
    ref = drift.fit_reference(COLUMNS, U_train, p_train)
    U, p = _inputs(rng, 999, shift=1.0), rng.random(999)
    U[:5, 1] = 3  # unseen category
    whole = drift.DriftMonitor(ref)
    whole.update(U, p)
    chunked = drift.DriftMonitor(ref)
    for s in range(0, 999, 100):
        chunked.update(U[s:s + 100], p[s:s + 100])
    assert chunked.report() == whole.report()
    report = whole.report(0.2)
    assert report["flagged"] == ["x"] and not report["scores_flagged"]
    assert report["columns"]["c"]["bins"] == ["a", "b", "c", drift.UNSEEN, drift.MISSING]
    assert report["columns"]["c"]["actual"][3] == pytest.approx(5 / 999)
    assert report["columns"]["c"]["psi"] < 0.1
    assert drift.warning_line(report).startswith("input drift (PSI above 0.2): x ")
    many = {**report, "flagged": ["x", "c"], "scores_flagged": True}
    assert drift.warning_line(many, most=1) == (
        f"input drift (PSI above 0.2): x {report['columns']['x']['psi']:.3g}, 1 more column, "
        f"scores {report['scores']['psi']:.3g}")
    same = drift.DriftMonitor(ref)
    same.update(U_train, p_train)
    quiet = same.report()
    assert quiet["flagged"] == [] and drift.warning_line(quiet) is None
    assert all(c["psi"] == 0.0 for c in quiet["columns"].values())
    json.dumps(report, allow_nan=False)  # a JSON document as it stands


def test_reference_round_trip_and_strict_reading():
    rng = np.random.default_rng(2)
    ref = drift.fit_reference(COLUMNS, _inputs(rng, 300), rng.random(300))
    doc = json.loads(json.dumps(ref.to_dict()))
    back = drift.Reference.from_dict(doc, COLUMNS)
    assert back == ref

    def refused(change, match, columns=COLUMNS):
        bad = json.loads(json.dumps(doc))
        change(bad)
        with pytest.raises(ModelFileError, match=match):
            drift.Reference.from_dict(bad, columns, "m/drift_reference.json")

    refused(lambda d: d.update(format="x"), "m/drift_reference.json: not a drift reference")
    refused(lambda d: d.update(format_version=2), "format_version")
    refused(lambda d: d["columns"][0]["counts"].append(1), r"columns\[0\] \('x'\): 'counts'")
    refused(lambda d: d["columns"][0]["edges"].reverse(), "'edges' must be")
    refused(lambda d: d["columns"][1]["counts"].__setitem__(0, -1), "'counts'")
    refused(lambda d: d["scores"].update(edges=[float("nan")]), "scores: 'edges'")
    refused(lambda d: None, "differ from preprocess.json", [COLUMNS[1], COLUMNS[0]])
    other = [COLUMNS[0], {**COLUMNS[1], "categories": ["a", "b", "d"]}]
    refused(lambda d: None, "kind or categories differ", other)


def test_model_directory_stores_the_reference_and_old_ones_load_without(tmp_path):
    import pandas as pd

    from features.tabular import Preprocessor
    from nn_core import MLP, load_model, save_model

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], 200),
                          "y": rng.integers(0, 2, 200)})
    pre = Preprocessor(["x"], ["c"], target="y").fit(frame)
    net = MLP(pre.n_features, hidden=(4,), dtype="float64", backend="numpy", seed=0)
    ref = drift.fit_reference(pre.columns, pre.inputs(frame),
                              net.predict_proba(pre.transform(frame)))
    save_model(tmp_path / "m", net, pre, reference=ref)
    assert load_model(tmp_path / "m").reference == ref
    save_model(tmp_path / "m", net, pre)  # a model saved without: the former one goes
    assert not (tmp_path / "m" / "drift_reference.json").exists()
    assert load_model(tmp_path / "m").reference is None
    save_model(tmp_path / "m", net, pre, reference=ref)
    path = tmp_path / "m" / "drift_reference.json"
    path.write_text(path.read_text().replace('"n_rows": 200', '"n_rows": 201'))
    with pytest.raises(ModelFileError, match=r"drift_reference\.json: columns"):
        load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="needs the preprocessing"):
        save_model(tmp_path / "n", net, reference=ref)
