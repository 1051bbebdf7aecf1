"""One set of rules for a row, stored with the model: predict.py (through ``features/``) and
the exporter's ``--eval-csv``/``--calibration-csv`` reader (``read_rows``, through
``Preprocessing.inputs``) refuse the same rows, naming the same row and column; the ranges
come from preprocess.json (the training schema's), not from a guess at scoring time."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nn_core import load_model
from nn_core.export.model import ExportError, load_model_dir
from nn_core.export.report import read_rows
from nn_core.preprocessing import MISSING, above_maximum, below_minimum
from propensity import predict, train

pytestmark = pytest.mark.slow  # trains with train.py in-process

REPO = Path(__file__).resolve().parents[3]
UCI = REPO / "data" / "online_shoppers_intention.csv"


def _call(main, argv, capsys) -> tuple[int, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


@pytest.fixture(scope="module")
def uci_model(tmp_path_factory) -> tuple[Path, list[str]]:
    """A model trained by train.py (the UCI roles and ranges) on every 8th UCI row, and the
    header and first 20 data lines of the table."""
    tmp = tmp_path_factory.mktemp("same_rules")
    lines = UCI.read_text().splitlines()
    (tmp / "train.csv").write_text("\n".join([lines[0], *lines[1:][7::8]]) + "\n")
    status = train.main([str(a) for a in ("--input", tmp / "train.csv", "--epochs", "2",
                                          "--hidden", "8", "--importance-repeats", "0",
                                          "--quiet", "--output", tmp / "run")])
    assert status == 0
    return tmp / "run", lines[:21]


def test_train_py_stores_the_schema_ranges(uci_model):
    doc = json.loads((uci_model[0] / "preprocess.json").read_text())
    ranges = {c["name"]: c.get("range") for c in doc["columns"] if c["kind"] == "numeric"}
    assert ranges["BounceRates"] == ranges["SpecialDay"] == [0.0, 1.0]
    assert ranges["Administrative"] == ranges["PageValues"] == [0.0, None]
    assert doc["format_version"] == 1  # the ranges change no feature: no new version
    assert all("range" not in c for c in doc["columns"] if c["kind"] == "categorical")


#: A bad cell per row: column, cell text, and the words both readers use where they share
#: them (out of range, missing); the other cases are named by row and column alike.
BAD_ROWS = [
    ("BounceRates", "1.5", above_maximum(1.0)),
    ("ExitRates", "-0.25", below_minimum(0.0)),
    ("SpecialDay", "2", above_maximum(1.0)),
    ("Month", "", MISSING),
    ("VisitorType", "NA", MISSING),
    ("Administrative_Duration", "-5", below_minimum(0.0)),  # a log1p column
    ("ProductRelated", "1e400", None),
    ("ExitRates", "abc", None),
]


@pytest.mark.parametrize(("column", "value", "words"), BAD_ROWS)
def test_predict_and_export_refuse_the_same_rows(uci_model, tmp_path, capsys, column, value,
                                                 words):
    model_dir, lines = uci_model
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    rows[6][header.index(column)] = value  # data row 7
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    status, err = _call(predict.main, ["--model", model_dir, "--input", csv_path, "--output",
                                       tmp_path / "scores.csv"], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert "data row 7 " in err and f"column {column!r}" in err, err
    assert not (tmp_path / "scores.csv").exists()

    model, _ = load_model_dir(model_dir)
    with pytest.raises(ExportError) as info:
        read_rows(model, csv_path, labelled=True)
    assert f"{csv_path}: row 7, column {column!r}: " in str(info.value)
    if words is not None:
        assert words in err and words in str(info.value), (err, str(info.value))


def test_the_rows_left_are_read_alike(uci_model, tmp_path):
    """Without the bad cell the same rows pass both readers (the check is no blanket
    refusal)."""
    model_dir, lines = uci_model
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    model, _ = load_model_dir(model_dir)
    frame, X, y = read_rows(model, csv_path, labelled=True)
    assert len(frame) == len(X) == len(y) == 20
    assert predict.main(["--model", str(model_dir), "--input", str(csv_path), "--output",
                         str(tmp_path / "scores.csv")]) == 0


def _shop_table(path: Path, n: int = 300) -> Path:
    """A non-UCI table: two quantities (``visits`` in [0, 9] by construction), a channel."""
    lines = ["sid,visits,spend,channel,bought"]
    for i in range(n):
        visits, spend = i % 10, round(5.0 + (i * 7919) % 97, 2)
        lines.append(f"s{i},{visits},{spend},{('ads', 'mail', 'direct')[i % 3]},"
                     f"{int(visits + (i % 3 == 1) * 3 > 6)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_role_file_range_is_kept_at_scoring(tmp_path, capsys):
    """A model trained with a role file's ``ranges`` refuses an out-of-range row in
    predict.py (before ranges were stored, only the UCI columns' were applied)."""
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"target": "bought", "numeric": ["visits", "spend"],
                                 "categorical": ["channel"], "id_column": "sid",
                                 "ranges": {"visits": [0, 20], "spend": [1, None]}}))
    status, err = _call(train.main, ["--input", _shop_table(tmp_path / "shop.csv"), "--config",
                                     roles, "--epochs", "2", "--hidden", "4",
                                     "--importance-repeats", "0", "--quiet", "--output",
                                     tmp_path / "run"], capsys)
    assert status == 0, err
    doc = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    assert [c.get("range") for c in doc["columns"]] == [[0.0, 20.0], [1.0, None], None]
    rows = tmp_path / "new.csv"
    for visits, spend, words in (("21", "10", above_maximum(20)),
                                 ("3", "0.5", below_minimum(1))):
        rows.write_text(f"sid,visits,spend,channel\na,1,10,ads\nb,{visits},{spend},mail\n")
        status, err = _call(predict.main, ["--model", tmp_path / "run", "--input", rows,
                                           "--output", tmp_path / "scores.csv"], capsys)
        assert status == 1 and "data row 2 " in err and words in err, err
        column = "'visits'" if visits == "21" else "'spend'"
        assert column in err
        with pytest.raises(ValueError, match=f"row 2, column {column}: {words}"):
            load_model(tmp_path / "run").predict_proba(
                pd.read_csv(rows, dtype=str))
    rows.write_text("sid,visits,spend,channel\na,1,10,ads\nb,20,1,mail\n")  # the bounds
    assert predict.main(["--model", str(tmp_path / "run"), "--input", str(rows), "--output",
                         str(tmp_path / "scores.csv")]) == 0
