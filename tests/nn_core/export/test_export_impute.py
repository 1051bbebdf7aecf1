"""Every export format of a model trained with ``--on-invalid impute`` computes what
predict.py computes on rows with missing cells.

A small UCI model is trained on a copy of the bundled table with blank and ``NA`` cells in
four columns of every kind the exporter handles (a log1p numeric column, a plain numeric
column, a categorical column of the "index" scheme and one of the "value" scheme), so each
of them gets a missing indicator; a fifth column (``Region``) is blanked only in rows
outside the training part, so it is imputed without an indicator. The exported C
(float32 and int8), Python (NumPy and pure) and ONNX predictors are given the raw vectors
``nn_core.export.encode_table`` makes (NaN = missing, +inf = an unseen category) and
compared with the model directory's preprocessing and network (``Predictor.predict_proba``,
predict.py's arithmetic) on every row.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from export_helpers import UCI_CSV, build_harness, import_file, run_harness

from nn_core import export as ex

BLANKED = {"PageValues": "", "ExitRates": "NA", "Month": "", "Browser": "null"}
TEST_ONLY = "Region"
NAMES = {"c": "imp_f32", "c-int8": "imp_i8", "python": "imp_np", "python-pure": "imp_pure"}


@pytest.fixture(scope="module")
def imputed(tmp_path_factory):
    """The model directory, its ExportModel, the table (NaN = missing), the raw vectors,
    the reference predictions, the exported files and the rows with a missing cell."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, read_table
    from nn_core import MLP, load_model, save_model

    root = tmp_path_factory.mktemp("impute")
    cells = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    n = len(cells)
    train = np.sort(rng.permutation(n)[: int(0.65 * n)])
    for name, token in BLANKED.items():
        cells.loc[rng.choice(n, n // 20, replace=False), name] = token
    outside = np.setdiff1d(np.arange(n), train)
    cells.loc[rng.choice(outside, 200, replace=False), TEST_ONLY] = ""
    cells.loc[outside[:5], "Month"] = "Smarch"  # unseen, beside the missing ones
    path = root / "holes.csv"
    cells.to_csv(path, index=False)
    df, rejected = read_table(path, Schema.uci(), "impute")
    assert not len(rejected.row) and len(df) == n
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue",
                       impute=True).fit(df.iloc[train])
    X = pre.transform(df)
    m = MLP(X.shape[1], hidden=(12, 6), seed=0, backend="numpy")
    m.fit(X[train], df["Revenue"].to_numpy()[train], epochs=3, batch_size=64, lr=3e-3)
    save_model(root / "model", m, pre)
    model, _ = ex.load_model_dir(root / "model")
    out = root / "out"
    for fmt, name in NAMES.items():
        ex.write_all(out, ex.export(model, fmt, name)[0])
    holes = np.flatnonzero(df[[*BLANKED, TEST_ONLY]].isna().any(axis=1).to_numpy())
    return {"dir": root / "model", "model": model, "df": df, "out": out, "holes": holes,
            "X": ex.encode_table(model, df), "ref": load_model(root / "model").predict_proba(df)}


def test_the_model_stores_imputation_and_indicators(imputed):
    """Indicators exactly for the columns with missing training values; NaN in the raw
    vectors exactly where the table had a missing cell; finite references everywhere."""
    model, df, X = imputed["model"], imputed["df"], imputed["X"]
    assert {c.name for c in model.inputs if c.missing_row is not None} == set(BLANKED)
    assert all(c.impute is not None for c in model.inputs)
    for c in model.inputs:
        assert np.array_equal(np.isnan(X[:, c.index]), df[c.name].isna().to_numpy()), c.name
    month = next(c for c in model.inputs if c.name == "Month")
    assert np.isinf(X[:5, month.index]).sum() + np.isnan(X[:5, month.index]).sum() >= 1
    assert len(imputed["holes"]) > 2000
    assert np.all(np.isfinite(imputed["ref"]))


def _predict(imputed, fmt, X):
    if fmt in ("c", "c-int8"):
        if shutil.which("gcc") is None:
            pytest.skip("gcc is not installed; the C targets cannot be built")
        return run_harness(build_harness(imputed["out"], NAMES[fmt]), X)
    module = import_file(imputed["out"] / f"{NAMES[fmt]}.py", NAMES[fmt])
    return np.asarray(module.predict_proba(X.tolist() if fmt == "python-pure" else X))


@pytest.mark.parametrize("fmt", ["c", "python", "python-pure"])
def test_float_targets_match_predict_on_rows_with_missing_cells(imputed, fmt):
    rows = imputed["holes"] if fmt != "python-pure" else imputed["holes"][:800]
    p = _predict(imputed, fmt, imputed["X"][rows])
    tol = 1e-5 if fmt == "c" else 1e-6
    assert np.max(np.abs(p - imputed["ref"][rows])) <= tol


def test_int8_matches_its_numpy_model_and_the_reference(imputed):
    X, rows = imputed["X"], imputed["holes"]
    p8 = _predict(imputed, "c-int8", X[rows])
    sim = ex.predict_int8(imputed["model"], X[rows])
    assert np.all(np.isfinite(p8))
    assert np.mean(np.abs(sim - p8) <= 1e-6) >= 0.99 and np.max(np.abs(sim - p8)) <= 0.02
    assert np.max(np.abs(p8 - imputed["ref"][rows])) <= 0.05


def test_onnx_matches_predict_on_rows_with_missing_cells(imputed):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    files, _ = ex.export(imputed["model"], "onnx", "imp_onnx")
    ex.write_all(imputed["out"], files)
    session = ort.InferenceSession(str(imputed["out"] / "imp_onnx.onnx"),
                                   providers=["CPUExecutionProvider"])
    rows = imputed["holes"]
    p = session.run(["p"], {"x": imputed["X"][rows].astype(np.float32)})[0]
    assert np.max(np.abs(p - imputed["ref"][rows])) <= 1e-5


@pytest.mark.parametrize("fmt", list(NAMES))
def test_other_invalid_numbers_still_give_nan(imputed, fmt):
    """Imputation covers NaN only: +-inf, and a negative value under log1p, stay invalid."""
    model = imputed["model"]
    x0 = imputed["X"][imputed["holes"][0]]
    rows = []
    for c in model.numeric:
        for value in (math.inf, -math.inf) + ((-2.0,) if c.log1p else ()):
            x = x0.copy()
            x[c.index] = value
            rows.append(x)
    assert np.all(np.isnan(_predict(imputed, fmt, np.array(rows))))


def test_the_indicator_changes_the_prediction(imputed):
    """A missing cell is not the same as its imputed value given explicitly: the indicator
    feature carries a weight (the rows differ only in that feature)."""
    model, X = imputed["model"], imputed["X"]
    c = next(c for c in model.inputs if c.name == "PageValues")
    row = imputed["holes"][0:1].copy()
    missing, given = X[row].copy(), X[row].copy()
    missing[0, c.index], given[0, c.index] = math.nan, c.impute
    F_missing, F_given = ex.features_from_codes(model, missing), ex.features_from_codes(model,
                                                                                         given)
    assert F_missing[0, c.missing_row] == 1 and F_given[0, c.missing_row] == 0
    assert np.array_equal(np.delete(F_missing, c.missing_row, axis=1),
                          np.delete(F_given, c.missing_row, axis=1))
    np_mod = import_file(imputed["out"] / "imp_np.py", "imp_np")
    assert np_mod.predict_proba(missing)[0] != np_mod.predict_proba(given)[0]


@pytest.mark.parametrize("fmt", ["python", "python-pure"])
def test_encode_passes_missing_as_nan_and_unseen_as_inf(imputed, fmt):
    """The predictors' own encode(record) gives the raw vectors encode_table gives: a
    missing value (blank, NA, None, NaN) is NaN and an unseen category +inf."""
    model = imputed["model"]
    module = import_file(imputed["out"] / f"{NAMES[fmt]}.py", NAMES[fmt])
    df = imputed["df"]
    rows = [*imputed["holes"][:20], 0, 1, 2, 3, 4]  # rows 0-4 hold the unseen "Smarch"
    for i in rows:
        record = {c.name: df[c.name].iloc[i] for c in model.inputs}
        record = {k: ("NA" if isinstance(v, float) and math.isnan(v) and k == "Month"
                      else None if isinstance(v, float) and math.isnan(v) and k == "Browser"
                      else v) for k, v in record.items()}
        np.testing.assert_array_equal(module.encode(record), imputed["X"][i])
    X = np.array([module.encode({c.name: df[c.name].iloc[i] for c in model.inputs})
                  for i in rows])
    p = np.asarray(module.predict_proba(X.tolist() if fmt == "python-pure" else X))
    assert np.max(np.abs(p - imputed["ref"][rows])) <= 1e-6


def test_eval_csv_keeps_rows_with_missing_cells(imputed, tmp_path):
    """--eval-csv of an imputing model reads a CSV with blank cells: every row is kept and
    encoded as encode_table encodes the table (text in a numeric column is still refused)."""
    from nn_core.export.report import read_rows

    cells = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False).iloc[:300]
    cells.loc[[3, 30], "PageValues"] = ""
    cells.loc[[4], "ExitRates"] = "NA"
    path = tmp_path / "eval.csv"
    cells.to_csv(path, index=False)
    _, X, y = read_rows(imputed["model"], path, labelled=True)
    assert len(X) == len(y) == 300
    page = next(c.index for c in imputed["model"].inputs if c.name == "PageValues")
    assert np.isnan(X[[3, 30], page]).all() and not np.isnan(np.delete(X[:, page], [3, 30])).any()
    cells.loc[5, "PageValues"] = "lots"
    cells.to_csv(path, index=False)
    message = r"eval.csv: row 6, column 'PageValues': not a finite number \(value: 'lots'\)"
    with pytest.raises(ex.ExportError, match=message):
        read_rows(imputed["model"], path, labelled=True)
