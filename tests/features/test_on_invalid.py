"""--on-invalid skip|impute below the command lines: which cells are bad, what skip lists,
what impute fills in (learnt on the training rows only), and how preprocess.json stores
imputation (format version 2, checked strictly on reading; version 1 still loads)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from features.tabular import (
    DataError,
    Preprocessor,
    Schema,
    check_frame,
    parse_frame,
    read_table,
)
from nn_core import MLP, load_model, save_model
from nn_core.io import ModelFileError
from nn_core.preprocessing import Preprocessing

SCHEMA = Schema("y", ("a", "rate"), ("c",), None, {"rate": (0.0, 1.0)})


def raw(**columns) -> pd.DataFrame:
    """Cells as the CSV reader gives them: text."""
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})


BAD = raw(a=["1", "", "x", "4", "NA", "6"], rate=["0.5", "0.1", "0.2", "7", "0.3", "0.4"],
          c=["u", "v", "null", "u", "v", "u"], y=["1", "0", "1", "0", "", "1"])


def test_error_mode_names_the_first_bad_cell_as_before():
    with pytest.raises(DataError, match=r"data row 2 .*column 'a': missing value"):
        parse_frame(BAD, SCHEMA, "t.csv")


def test_skip_lists_every_bad_cell_and_keeps_the_good_rows():
    frame, rejected = check_frame(BAD, SCHEMA, "t.csv", first_row=11, on_invalid="skip")
    assert frame.index.tolist() == [0, 5]  # the chunk's positions of the rows kept
    assert frame["a"].tolist() == [1.0, 6.0] and frame["y"].tolist() == [1, 1]
    table = rejected.frame()
    assert table.to_dict("records") == [
        {"row": 12, "column": "a", "value": "", "reason": "missing value"},
        {"row": 13, "column": "a", "value": "x", "reason": "not a number"},
        {"row": 13, "column": "c", "value": "null", "reason": "missing value"},
        {"row": 14, "column": "rate", "value": "7", "reason": "value above the allowed maximum 1"},
        {"row": 15, "column": "a", "value": "NA", "reason": "missing value"},
        {"row": 15, "column": "y", "value": "", "reason": "missing target value"},
    ]
    assert rejected.rows.tolist() == [12, 13, 14, 15]
    assert rejected.counts() == {"missing value": 3, "missing target value": 1,
                                 "not a number": 1, "value above the allowed maximum 1": 1}


def test_impute_turns_missing_cells_into_nan_and_keeps_other_errors():
    good = BAD.iloc[[0, 1, 5]].copy()
    good.loc[5, "c"] = ""
    frame, rejected = check_frame(good, SCHEMA, "t.csv", on_invalid="impute")
    assert not len(rejected.row)
    assert math.isnan(frame["a"].iloc[1]) and frame["c"].isna().tolist() == [False, False, True]
    with pytest.raises(DataError, match=r"data row 3 .*column 'a': not a number"):
        check_frame(BAD, SCHEMA, "t.csv", on_invalid="impute")
    target = BAD.iloc[[0, 4]].copy()  # a missing target is never imputed
    target.loc[4, "a"] = "5"
    with pytest.raises(DataError, match="missing target value"):
        check_frame(target, SCHEMA, "t.csv", on_invalid="impute")


def test_read_table_skip_over_chunks_and_all_rows_bad(tmp_path):
    path = tmp_path / "t.csv"
    BAD.to_csv(path, index=False)
    frame, rejected = read_table(path, SCHEMA, "skip", chunksize=2)
    assert len(frame) == 2 and frame.index.tolist() == [0, 1]
    assert rejected.rows.tolist() == [2, 3, 4, 5]
    BAD.iloc[1:5].to_csv(path, index=False)
    with pytest.raises(DataError, match=r"every data row has an invalid cell \(4 rows"):
        read_table(path, SCHEMA, "skip")


@pytest.mark.parametrize("chunksize", [2, 100])
def test_skip_lists_a_number_beyond_float_range_as_written(tmp_path, chunksize):
    """1e400, which the parser reads as inf, is listed with its text and reason, whether
    its column was read as numbers (chunksize 2: the chunk of rows 3-4) or as text; an
    infinite cell keeps its own reason; a row short of a field stops skip too."""
    path = tmp_path / "t.csv"
    path.write_text("a,rate,c,y\n1,0.5,u,1\n2,0.1,v,0\n3,0.2,u,1\n1e400,0.3,u,0\n"
                    "-Infinity,0.4,v,1\nx,0.5,u,0\n")
    frame, rejected = read_table(path, SCHEMA, "skip", chunksize=chunksize)
    assert len(frame) == 3
    assert rejected.frame().values.tolist() == [
        [4, "a", "1e400", "value beyond float range"], [5, "a", "-Infinity", "infinite value"],
        [6, "a", "x", "not a number"]]
    path.write_text("a,rate,c,y\n1,0.5,u,1\n2,0.1,v\n3,0.2,u,1\n")
    with pytest.raises(DataError, match=r"data row 2 \(line 3; .*expected 4 fields, found 3"):
        read_table(path, SCHEMA, "skip", chunksize=chunksize)


def test_imputation_is_learnt_on_the_fitted_rows_only():
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0, 100.0, np.nan],
                       "b": [0.0, 1.0, 2.0, 3.0, 4.0],
                       "c": pd.Categorical(["u", None, "u", "w", "w"])})
    train = df.iloc[:3]
    pre = Preprocessor(["a", "b"], ["c"], log1p=False, impute=True).fit(train)
    a, b, c = pre.columns
    assert a["impute"] == {"value": 2.0, "indicator": True}  # median of 1 and 3 (not 100)
    assert b["impute"] == {"value": 1.0, "indicator": False}  # no missing training value
    assert c["impute"] == {"value": "u", "indicator": True} and c["categories"] == ["u"]
    assert pre.feature_names == ["a", "missing(a)", "b", "c=u", "c=<unseen>", "missing(c)"]
    F = pre.transform(df)
    assert F[:, 1].tolist() == [0, 1, 0, 0, 1] and F[:, 5].tolist() == [0, 1, 0, 0, 0]
    assert F[1, 0] == F[4, 0] == (2.0 - a["mean"]) / a["std"]  # the median, standardised
    assert F[1, 3] == 1 and F[4, 4] == 1  # missing -> most frequent; "w" -> unseen
    # the statistics are those of the imputed column (what the network sees)
    assert a["mean"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="'a': every training value is missing"):
        Preprocessor(["a"], [], impute=True).fit(df.iloc[[1, 4]])


def _saved(tmp_path, impute=True):
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0], "c": pd.Categorical(["u", "v", None])})
    if not impute:
        df = df.iloc[[0]]
    pre = Preprocessor(["a"], ["c"], impute=impute, target="y").fit(df)
    return save_model(tmp_path / "m", MLP(pre.n_features, (3,), seed=0, backend="numpy"), pre)


def test_preprocess_json_round_trip_and_versions(tmp_path):
    d = _saved(tmp_path)
    doc = json.loads((d / "preprocess.json").read_text())
    assert doc["format_version"] == 2
    pre = load_model(d).preprocessing
    assert pre.imputes and pre.columns[0]["impute"] == {"value": 2.0, "indicator": True}
    frame = pd.DataFrame({"a": ["", "5"], "c": ["NA", "zz"]})
    assert np.all(np.isfinite(load_model(d).predict_proba(frame)))
    plain = json.loads((_saved(tmp_path / "p", impute=False) / "preprocess.json").read_text())
    assert plain["format_version"] == 1 and "impute" not in json.dumps(plain)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda d: d["columns"][0]["impute"].update(value="2"), "'impute' must be"),
    (lambda d: d["columns"][0]["impute"].update(value=float("nan")), "'impute' must be"),
    (lambda d: d["columns"][0]["impute"].update(indicator=1), "'impute' must be"),
    (lambda d: d["columns"][0]["impute"].update(extra=1), "'impute' must be"),
    (lambda d: d["columns"][1]["impute"].update(value="never"), "one of the categories"),
    (lambda d: d.update(format_version=1), "'impute' needs format_version 2"),
    (lambda d: [c.pop("impute") for c in d["columns"]], "no column has 'impute'"),
])
def test_malformed_imputation_is_refused_naming_the_file(tmp_path, change, needle):
    d = _saved(tmp_path)
    doc = json.loads((d / "preprocess.json").read_text())
    change(doc)
    text = json.dumps(doc, allow_nan=True)
    with pytest.raises(ModelFileError, match=needle) as info:
        Preprocessing.from_dict(json.loads(text), str(d / "preprocess.json"))
    assert "preprocess.json" in str(info.value)


def test_negative_imputed_value_in_a_log1p_column_is_refused():
    doc = {"format": "purchase-propensity-preprocess", "format_version": 2, "columns": [
        {"name": "a", "kind": "numeric", "log1p": True, "mean": 0.0, "std": 1.0,
         "impute": {"value": -1.0, "indicator": False}}]}
    with pytest.raises(ModelFileError, match=">= 0 in a log1p column"):
        Preprocessing.from_dict(doc)


def test_a_version_1_document_without_imputation_still_loads():
    doc = {"format": "purchase-propensity-preprocess", "format_version": 1, "target": "y",
           "columns": [{"name": "a", "kind": "numeric", "log1p": False, "mean": 0.0,
                        "std": 1.0}]}
    pre = Preprocessing.from_dict(doc)
    assert not pre.imputes and pre.n_features == 1
    with pytest.raises(ValueError, match="not a finite number"):
        pre.transform(pd.DataFrame({"a": [""]}))  # without imputation, missing stays an error


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
@pytest.mark.parametrize("cell, problem", [
    ("1e300", "too far from the training values to be scaled"),
    ("-2.50", "negative value -2.5 in a log1p column"),
])
def test_a_split_error_names_its_file_row_line_and_text(tmp_path, on_invalid, cell, problem):
    """The split's errors come after the table is closed: the file is read again for the
    line where the row starts (a quoted line break before it) and the cell as written; with
    ``skip`` the row is the file's, not the frame's (a rejected row before it)."""
    from features.datasets import TableData, resolve_schema
    from features.tabular import stratified_split

    n, bad = 200, 151  # data row of the bad value
    rng = np.random.default_rng(0)
    x = rng.exponential(3.0, n) if cell.startswith("-") else rng.normal(size=n)
    lines = ["x,c,y"] + [f"{v:.6f},{'ab'[i % 2]},{i % 3 == 0:d}"  # exponential: log1p'd
                         for i, v in enumerate(x)]
    lines[3] = '0.5,"a\nb",1'  # data row 3 on lines 4 and 5
    lines[bad] = f"{cell},a,0"
    if on_invalid == "skip":
        lines[10] = "oops,a,0"  # rejected: the frame's row 150 is the file's row 151
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n")
    schema = resolve_schema(target="y", numeric=["x"], categorical=["c"])
    data = TableData(path, schema, on_invalid=on_invalid)
    kept = np.flatnonzero(np.arange(n) != (9 if on_invalid == "skip" else -1))
    seed = next(s for s in range(50)  # one whose training part leaves the row out
                if np.flatnonzero(kept == bad - 1)[0] not in stratified_split(data.y, s)[0])
    with pytest.raises(DataError) as info:
        data.split(seed)
    assert str(info.value).startswith(
        f"{path}, data row {bad} (line {bad + 2}; row 1 is the first row below the header), "
        f"column 'x': {problem}")
    if cell == "1e300":
        assert str(info.value).endswith("(value: '1e300')")
