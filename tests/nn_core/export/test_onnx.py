"""The ONNX target: ``python -m nn_core.export MODEL --format onnx`` writes a graph of the raw
inputs that ONNX Runtime runs to the same probabilities as predict.py.

As the C target (tests/nn_core/export/test_export.py): every row of the bundled CSV, unseen
codes, extreme values and invalid numerics, and every activation of the table. Needs the
``onnx`` extra (onnx and onnxruntime); skipped, saying so, without it.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from export_helpers import (
    build_harness,
    export_cli,
    import_file,
    reference_predict,
    run_harness,
    train_uci_model,
    unseen_and_extreme_rows,
)

from nn_core import export as ex
from nn_core.activations import ACTIVATIONS
from nn_core.losses import OUTPUTS

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime is not installed (pip install '.[onnx]')")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, X: np.ndarray) -> np.ndarray:
    return session.run(["p"], {"x": np.asarray(X, dtype=np.float32)})[0]


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    """A 16-8 ReLU model of the UCI rows, exported by the command line; its session."""
    root = tmp_path_factory.mktemp("onnx")
    df, test = train_uci_model(root / "model")
    res = export_cli("--model", root / "model", "--format", "onnx", "--output", root / "out",
                     "--name", "propensity")
    assert res.returncode == 0, res.stderr
    model, _ = ex.load_model_dir(root / "model")
    return {"dir": root / "model", "out": root / "out", "df": df, "test": test,
            "model": model, "session": _session(root / "out" / "propensity.onnx"),
            "stdout": res.stdout, "ref": reference_predict(root / "model", df),
            "X": ex.encode_table(model, df)}


def test_cli_writes_the_graph_and_its_description(uci):
    assert sorted(p.name for p in uci["out"].iterdir()) == ["propensity.json",
                                                            "propensity.onnx"]
    assert "format onnx" in uci["stdout"]
    doc = json.loads((uci["out"] / "propensity.json").read_text())
    assert doc["target_format"] == "onnx" and doc["size"]["opset"] >= 17
    assert doc["inputs"] == ex.input_table(uci["model"])
    assert doc["network"]["features"] == uci["model"].params[0][0].shape[0]


def test_graph_passes_the_checker_at_opset_17_or_later(uci):
    graph = onnx.load(str(uci["out"] / "propensity.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["x"]
    assert [o.name for o in graph.graph.output] == ["p"]
    assert "Revenue" in graph.doc_string


def test_matches_predict_py_on_every_row(uci):
    p = _run(uci["session"], uci["X"])
    assert p.shape == (len(uci["df"]),) == uci["ref"].shape
    assert np.max(np.abs(p - uci["ref"])) <= 1e-5


def test_takes_the_raw_vector_of_the_c_target(uci):
    """The same raw rows give the same answers as the NumPy predictor and, where gcc is
    installed, the compiled C predictor (the same folded float32 weights): one input table."""
    root = uci["out"].parent
    files, _ = ex.export(uci["model"], "python", "pp_np_for_onnx")
    ex.write_all(root / "np", files)
    module = import_file(root / "np" / "pp_np_for_onnx.py", "pp_np_for_onnx")
    p = _run(uci["session"], uci["X"])
    assert np.max(np.abs(p - module.predict_proba(uci["X"]))) <= 1e-5
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (Debian: apt-get install gcc); the C target's "
                    "half of this comparison cannot run")
    ex.write_all(root / "c", ex.export(uci["model"], "c", "pp_c_for_onnx")[0])
    p_c = run_harness(build_harness(root / "c", "pp_c_for_onnx"), uci["X"])
    assert np.max(np.abs(p - p_c)) <= 2e-6


def test_unseen_codes_and_extreme_values(uci):
    """An unseen code (another number, a non-integer, NaN, +-inf) acts as a text never seen
    in training; huge and zero numerics (and -0.5 where there is no log1p) as predict.py."""
    model, df = uci["model"], uci["df"]
    base = df.iloc[uci["test"][:3]].reset_index(drop=True)
    X, frame = unseen_and_extreme_rows(
        model, base, (99.0, 2.5, -1.0, math.nan, math.inf, -math.inf, 1e30))
    expected = reference_predict(uci["dir"], frame)
    p = _run(uci["session"], X)
    assert np.all(np.isfinite(p))
    assert np.max(np.abs(p - expected)) <= 1e-5


def test_invalid_numerics_give_nan_and_leave_other_rows_alone(uci):
    model = uci["model"]
    good = uci["X"][uci["test"][:1]]
    rows = []
    for c in model.numeric:
        for value in (math.nan, math.inf, -math.inf) + ((-1e-3, -5.0) if c.log1p else ()):
            x = good.copy()
            x[0, c.index] = value
            rows.append(x)
    X = np.concatenate([*rows, good])
    p = _run(uci["session"], X)
    assert np.all(np.isnan(p[:-1]))
    assert abs(p[-1] - uci["ref"][uci["test"][0]]) <= 1e-5


def test_log1p_columns_near_zero(uci):
    """ONNX has no log1p: the graph's log(1 + x) still matches predict.py's log1p from
    1e-7 up (the lost low bits of a small x stay below 1.2e-7 before standardisation)."""
    model = uci["model"]
    c = next(c for c in model.numeric if c.log1p)
    base = uci["df"].iloc[uci["test"][:1]]
    values = np.array([1e-7, 3e-6, 1e-4, 0.37, 1.0, 123.25])
    frame = pd.concat([base] * len(values), ignore_index=True)
    frame[c.name] = values
    X = ex.encode_table(model, frame)
    ref = reference_predict(uci["dir"], frame)
    assert np.max(np.abs(_run(uci["session"], X) - ref)) <= 1e-6


CASES = [(act, "sigmoid", "float32") for act in ACTIVATIONS] + [
    ("relu", "identity", "float32"), ("tanh", "sigmoid", "float64"),
    ("gelu", "identity", "float64"), ((), "sigmoid", "float32")]


def test_cases_cover_every_activation_and_output():
    assert {a for a, _, _ in CASES if a} >= set(ACTIVATIONS)
    assert {o for _, o, _ in CASES} == set(OUTPUTS)


@pytest.mark.parametrize(("activation", "output", "dtype"), CASES)
def test_every_activation_of_the_table(tmp_path, activation, output, dtype):
    """Each activation is spelled by its table entry's ``onnx`` field; numeric and
    categorical columns with unseen codes, a float64 network (run in float32), the
    identity output and logistic regression (``()``: no hidden layer)."""
    from features.tabular import Preprocessor
    from nn_core import MLP, save_model

    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame({
        "signed": rng.normal(size=n),
        "count": rng.poisson(3.0, size=n).astype(float),
        "wide": rng.choice(["-3", "5", "1000"], size=n),
        "label": rng.choice(["a", "b", "c"], size=n),
    })
    y = rng.integers(0, 2, size=n) if output == "sigmoid" else rng.normal(size=n)
    pre = Preprocessor(["signed", "count"], ["wide", "label"]).fit(df)
    X = pre.transform(df)
    hidden = (5, 3) if activation else ()
    m = MLP(X.shape[1], hidden=hidden, activation=activation or "relu", output=output,
            dtype=dtype, seed=3, backend="numpy")
    m.fit(X, y, epochs=3, batch_size=32, lr=1e-2)
    save_model(tmp_path / "m", m, pre)
    model, _ = ex.load_model_dir(tmp_path / "m")
    files, _ = ex.export(model, "onnx", "syn")
    ex.write_all(tmp_path / "out", files)
    raw = ex.encode_table(model, df)
    frame = df.copy()
    wide = next(c.index for c in model.inputs if c.name == "wide")
    raw[:4, wide] = [7.0, 1000.5, np.nan, -4.0]  # unseen codes of "wide"
    frame.loc[:3, "wide"] = "unseen"
    p = _run(_session(tmp_path / "out" / "syn.onnx"), raw)
    assert np.max(np.abs(p - m.predict_proba(pre.transform(frame)))) <= 1e-5


def test_missing_onnx_package_is_a_clear_error(uci, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # "import onnx" now raises ImportError
    with pytest.raises(ex.ExportError, match=r"needs the onnx package"):
        ex.export(uci["model"], "onnx", "m")
