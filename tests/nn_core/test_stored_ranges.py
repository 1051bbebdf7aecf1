"""The allowed range of each numeric column, stored in preprocess.json (``"range": [low,
high]``): written by a ``Preprocessor`` given the schema's ranges, checked on reading,
applied by ``Preprocessing.inputs`` with the table reader's words, taken by
``features/scoring.py: scoring_schema``, and ignored (same features) by an older reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from old_source import module_at

from features.scoring import scoring_schema
from features.tabular import (
    UCI_CATEGORICAL,
    UCI_NUMERIC,
    UCI_RANGES,
    Preprocessor,
    Schema,
    load_table,
)
from nn_core import MLP, load_model, save_model
from nn_core.io import ModelFileError
from nn_core.preprocessing import MISSING, Preprocessing, above_maximum, below_minimum

REPO = Path(__file__).resolve().parents[2]
#: The last commit whose reader knew nothing of ranges.
BEFORE_RANGES = "1a3cf08"


def _frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"count": rng.integers(0, 9, n).astype(float),
                         "rate": np.round(rng.random(n), 3),
                         "code": rng.choice(["a", "b"], n)})


def _fitted(**kwargs) -> Preprocessor:
    return Preprocessor(["count", "rate"], ["code"], **kwargs).fit(_frame())


def test_the_ranges_given_are_stored_and_read_back(tmp_path):
    pre = _fitted(ranges={"count": (0, None), "rate": (0.0, 1.0)})
    assert [c.get("range") for c in pre.columns] == [[0.0, None], [0.0, 1.0], None]
    save_model(tmp_path, MLP(pre.n_features, (2,)), pre)
    back = load_model(tmp_path).preprocessing
    assert back.column_ranges == {"count": (0.0, None), "rate": (0.0, 1.0)}
    assert json.loads((tmp_path / "preprocess.json").read_text())["format_version"] == 1
    # a column the mapping leaves out is open on both sides; an infinity opens a side
    pre = _fitted(ranges={"rate": (-np.inf, np.inf)})
    assert pre.column_ranges == {"count": (None, None), "rate": (None, None)}
    # no ranges given: none stored, as before (scoring then falls back, see below)
    assert _fitted().column_ranges is None
    assert all("range" not in c for c in _fitted().to_dict()["columns"])


@pytest.mark.parametrize(("ranges", "message"), [
    ({"code": (0, 1)}, "range given for 'code', which is not a numeric column"),
    ({"rate": (1, 0)}, "range of 'rate': low 1 is above high 0"),
    ({"rate": (np.inf, None)}, "an infinity only as an open side"),
    ({"rate": ("0", 1)}, "range of 'rate' must be [low, high] (numbers or null; not NaN"),
    ({"rate": (0,)}, "range of 'rate' must be [low, high]"),
    ({"rate": (0, 10**400)}, "within float range), got '(0, 1000"),  # was an OverflowError
    ({"rate": (np.complex128(1), 2)}, "within float range), got (np.complex128"),
])
def test_a_bad_range_is_refused_by_the_preprocessor(ranges, message):
    with pytest.raises(ValueError) as info:
        Preprocessor(["count", "rate"], ["code"], ranges=ranges)
    assert message in str(info.value)


def test_the_ranges_are_taken_at_fit_from_the_attributes_then():
    """scikit-learn's convention: ``fit`` reads ``numeric`` and ``ranges`` as they are then
    (review: a range computed in ``__init__`` ignored ``p.ranges = ...`` and gave KeyError
    for a numeric column added after construction)."""
    pre = Preprocessor(["count"], ["code"], ranges={"count": (0, 10)})
    pre.numeric = ["count", "rate"]
    assert pre.fit(_frame()).column_ranges == {"count": (0.0, 10.0), "rate": (None, None)}
    pre.ranges = {"rate": (0.0, 1.0)}
    assert pre.fit(_frame()).column_ranges == {"count": (None, None), "rate": (0.0, 1.0)}
    pre.ranges = None
    assert pre.fit(_frame()).column_ranges is None
    pre.ranges = {"rate": (0.5, 1.0)}
    with pytest.raises(ValueError, match=r"column 'rate': " + below_minimum(0.5)):
        pre.fit(_frame())
    pre.ranges = {"code": (0, 1)}
    with pytest.raises(ValueError, match="range given for 'code', which is not a numeric"):
        pre.fit(_frame())
    assert pre.set_params(ranges={"rate": (0, 1)}).fit(_frame()).column_ranges["rate"] == (
        0.0, 1.0)


def test_training_rows_outside_the_range_are_refused():
    with pytest.raises(ValueError, match=r"column 'rate': " + below_minimum(0.5)):
        _fitted(ranges={"rate": (0.5, 1.0)})


def _doc(column: dict) -> dict:
    return {"format": "purchase-propensity-preprocess", "format_version": 1,
            "columns": [column, {"name": "c", "kind": "categorical", "categories": ["x"]}]}


NUMERIC = {"name": "a", "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0}


@pytest.mark.parametrize("bounds", [[1, 0], [0], [0, 1, 2], ["0", 1], [True, None], None,
                                    {"low": 0}, [0, 1e400], [float("nan"), None]])
def test_a_damaged_range_is_refused_in_one_line(bounds):
    with pytest.raises(ModelFileError) as info:
        Preprocessing.from_dict(json.loads(json.dumps(_doc({**NUMERIC, "range": bounds}))))
    message = str(info.value)
    assert message.startswith("preprocess.json: columns[0] ('a'): 'range' must be [low, "
                              "high] (finite numbers or null, low <= high)")
    assert "\n" not in message


def test_a_range_on_a_categorical_column_is_refused():
    doc = _doc(NUMERIC)
    doc["columns"][1]["range"] = [0, 1]
    with pytest.raises(ModelFileError, match=r"columns\[1\] \('c'\): 'range' in a categorical"):
        Preprocessing.from_dict(doc)


@pytest.mark.parametrize("bounds", [[None, None], [0, None], [None, 5], [2, 2], [-1.5, 3]])
def test_good_ranges_are_read(bounds):
    pre = Preprocessing.from_dict(_doc({**NUMERIC, "range": bounds}))
    assert pre.columns[0]["range"] == bounds and pre.column_ranges == {"a": tuple(bounds)}


def test_inputs_refuse_what_the_table_reader_refuses():
    pre = _fitted(ranges={"rate": (0.0, 1.0)})
    frame = pd.DataFrame({"count": [1.0, 2.0], "rate": ["0.5", "1.5"], "code": ["a", "b"]})
    with pytest.raises(ValueError, match=r"^row 6, column 'rate': "
                                         + above_maximum(1.0) + r" \(value: '1.5'\)$"):
        pre.inputs(frame, first_row=5)
    for cell in ("", " NA ", None, np.nan):
        frame = pd.DataFrame({"count": [1.0, 2.0], "rate": [0.5, 0.5], "code": ["a", cell]})
        with pytest.raises(ValueError, match=r"^row 2, column 'code': " + MISSING):
            pre.transform(frame)
    # an unseen category is still the unseen bucket, and the bounds themselves pass
    frame = pd.DataFrame({"count": [1.0], "rate": [1.0], "code": ["zzz"]})
    assert pre.transform(frame)[0, -1] == 1.0
    # with imputation a missing category is imputed, not refused
    imputing = _fitted(impute=True)
    frame = pd.DataFrame({"count": [1.0], "rate": [0.5], "code": [""]})
    assert imputing.transform(frame).shape == (1, imputing.n_features)


def test_the_table_reader_and_the_model_say_the_same_words(tmp_path):
    """features' reader (the schema's ranges) and Preprocessing.inputs (the stored ones)."""
    pre = _fitted(ranges={"rate": (0.0, 1.0)})
    csv = tmp_path / "t.csv"
    csv.write_text("count,rate,code\n1,0.5,a\n2,1.5,b\n")
    schema = Schema(None, ("count", "rate"), ("code",), None, {"rate": (0.0, 1.0)})
    with pytest.raises(ValueError) as table_error:
        load_table(csv, schema, with_target=False)
    with pytest.raises(ValueError) as model_error:
        pre.inputs(pd.read_csv(csv, dtype=str, keep_default_na=False))
    words = above_maximum(1.0)
    assert f"column 'rate': {words}" in str(table_error.value)
    assert f"row 2, column 'rate': {words}" in str(model_error.value)


def test_scoring_schema_takes_the_stored_ranges():
    pre = _fitted(ranges={"rate": (0.0, 1.0)})
    assert pre.columns[0]["log1p"] and not pre.columns[1]["log1p"]
    # count: open, but a log1p column is held to >= 0; rate: its stored range
    assert scoring_schema(pre).ranges == {"count": (0.0, None), "rate": (0.0, 1.0)}


def test_scoring_schema_merges_log1p_and_the_stored_range():
    doc = _doc({**NUMERIC, "log1p": True, "range": [None, 10]})
    assert scoring_schema(Preprocessing.from_dict(doc)).ranges == {"a": (0.0, 10)}
    doc = _doc({**NUMERIC, "log1p": True, "range": [2, None]})
    assert scoring_schema(Preprocessing.from_dict(doc)).ranges == {"a": (2, None)}


def test_an_older_uci_model_keeps_the_uci_ranges():
    """No stored ranges (an older model dir): the UCI heuristic, for UCI columns only."""
    df = load_table(REPO / "data" / "online_shoppers_intention.csv", Schema.uci())
    older = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(df.iloc[:500])
    ranges = scoring_schema(older).ranges
    assert ranges["BounceRates"] == UCI_RANGES["BounceRates"] == (0.0, 1.0)
    assert scoring_schema(_fitted()).ranges == {"count": (0.0, None)}  # the log1p rule only
    stored = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue",
                          ranges={"BounceRates": (0.0, 0.5)}).fit(
        df.iloc[:500][df["BounceRates"].iloc[:500] <= 0.5])
    ranges = scoring_schema(stored).ranges
    assert ranges["BounceRates"] == (0.0, 0.5)  # the stored range, not UCI_RANGES
    assert ranges.get("ExitRates", (None, None))[1] is None  # no UCI bound where none stored


def test_an_older_reader_ignores_the_ranges_and_computes_the_same_features():
    """The reader before ranges (commit BEFORE_RANGES) reads a file with them: the ranges
    change no feature, so they need no new format version."""
    old = module_at(BEFORE_RANGES)
    pre = _fitted(ranges={"count": (0, None), "rate": (0.0, 1.0)})
    back = old.Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    frame = _frame()
    np.testing.assert_array_equal(back.transform(frame), pre.transform(frame))


def test_a_typed_frame_cell_is_quoted_as_python_writes_it():
    """Through the Python API the cells are numbers, not text: the message quotes 30.5 and
    9, not their NumPy reprs (np.float64(30.5))."""
    pre = _fitted(ranges={"count": (0, 8), "rate": (0.0, 1.0)})
    rate = _frame(2).assign(rate=np.array([0.5, 30.5]))
    with pytest.raises(ValueError, match=r"^row 2, column 'rate': .* \(value: '30\.5'\)$"):
        pre.inputs(rate)
    count = pd.DataFrame({"count": np.array([9], dtype=np.int64), "rate": [0.5],
                          "code": ["a"]})
    with pytest.raises(ValueError, match=r"^row 1, column 'count': .* \(value: '9'\)$"):
        pre.inputs(count)
    float32 = _frame(2).assign(rate=np.array([0.5, 1.1], dtype=np.float32))
    with pytest.raises(ValueError, match=r"^row 2, column 'rate': .* \(value: '1\.1'\)$"):
        pre.inputs(float32)  # not float64's digits of float32 1.1 (1.100000023841858)
