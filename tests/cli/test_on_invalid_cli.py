"""train.py and predict.py --on-invalid error|skip|impute (issue 16.10), in this process.

A small table of three feature columns with holes and garbage in known rows: ``error`` (the
default) is unchanged; ``skip`` drops exactly the bad rows (train counts them per reason,
predict lists their cells in a side file and keeps the file's row numbers as ids);
``impute`` trains a model that stores its imputation and scores rows with missing cells.
Each refusal is one line, a non-zero status and nothing written.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nn_core import load_model
from propensity import predict, train

pytestmark = pytest.mark.slow  # each test trains a model or runs a command end to end


N = 400
MISSING_X1 = list(range(3, N, 10))  # 40 rows (1-based data rows 4, 14, ...)
GARBAGE_X2 = [7, 77, 177]
MISSING_C = [50, 250]


def table(path: Path, holes: bool = True, garbage: bool = True) -> Path:
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=N)
    x2 = rng.uniform(0, 5, size=N)
    c = rng.choice(["red", "green", "blue"], size=N)
    y = (x1 + 0.5 * (c == "red") + rng.normal(scale=0.5, size=N) > 0.3).astype(int)
    cells = pd.DataFrame({"x1": x1.astype(str), "x2": x2.astype(str), "c": c,
                          "y": y.astype(str), "id": [f"s{i}" for i in range(N)]})
    if holes:
        cells.loc[MISSING_X1, "x1"] = ""
        if garbage:
            cells.loc[GARBAGE_X2, "x2"] = "abc"
        cells.loc[MISSING_C, "c"] = "NA"
    cells.to_csv(path, index=False)
    return path


ROLES = ("--target", "y", "--numeric", "x1,x2", "--categorical", "c", "--id-column", "id")
FAST = ("--hidden", "4", "--epochs", "2", "--backend", "numpy", "--quiet")


def run(capsys, main, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str, *needles) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tables: clean, with holes and garbage, with holes only; a model trained with skip on
    the second and one trained with impute on the third."""
    root = tmp_path_factory.mktemp("on_invalid")
    holes, clean = table(root / "holes.csv"), table(root / "clean.csv", holes=False)
    missing = table(root / "missing.csv", garbage=False)
    for mode, source in (("skip", holes), ("impute", missing)):
        status = train.main([str(a) for a in ("--input", source, *ROLES, *FAST, "--on-invalid",
                                                mode, "--output", root / mode)])
        assert status == 0
    return {"root": root, "holes": holes, "clean": clean, "missing": missing,
            "skip": root / "skip", "impute": root / "impute"}


def test_train_default_error_is_unchanged(capsys, runs, tmp_path):
    status, _, err = run(capsys, train.main, "--input", runs["holes"], *ROLES, *FAST,
                         "--output", tmp_path / "run")
    assert status == 1
    one_line(err, "holes.csv", "data row 4", "column 'x1'", "missing value")
    assert not (tmp_path / "run").exists()


def test_train_skip_reports_the_rows_per_reason(capsys, runs, tmp_path):
    status, _, err = run(capsys, train.main, "--input", runs["holes"], *ROLES, *FAST,
                         "--on-invalid", "skip", "--output", tmp_path / "run")
    assert status == 0
    line = next(e for e in err.splitlines() if "--on-invalid skip" in e)
    assert "left out 45 of 400 data rows (missing value: 42, not a number: 3)" in line
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["rejected"] == {
        "rows": 45, "by_reason": {"missing value": 42, "not a number": 3}}
    assert sum(metrics["data"]["split_sizes"].values()) == N - 45
    assert json.loads((tmp_path / "run" / "preprocess.json").read_text())["format_version"] == 1


def test_train_impute_stores_the_imputation_with_the_model(runs):
    pre = load_model(runs["impute"]).preprocessing
    impute = {c["name"]: c["impute"] for c in pre.columns}
    assert impute["x1"]["indicator"] and impute["c"]["indicator"]
    assert not impute["x2"]["indicator"]  # never missing in the training rows
    assert "missing(x1)" in pre.feature_names and "missing(x2)" not in pre.feature_names


def test_train_impute_still_refuses_garbage(capsys, runs, tmp_path):
    status, _, err = run(capsys, train.main, "--input", runs["holes"], *ROLES, *FAST,
                         "--on-invalid", "impute", "--output", tmp_path / "run")
    assert status == 1  # text in a numeric column is not a missing value
    one_line(err, "data row 8", "column 'x2'", "not a number", "'abc'")
    assert not (tmp_path / "run").exists()


def test_predict_skip_writes_scores_and_the_rejected_rows(capsys, runs, tmp_path):
    out = tmp_path / "scores.csv"
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input",
                         runs["holes"], "--output", out, "--on-invalid", "skip")
    assert status == 0, err
    line = next(e for e in err.splitlines() if "--on-invalid skip" in e)
    assert "left out 45 of 400 data rows (missing value: 42, not a number: 3)" in line
    assert line.endswith("their cells are in " + str(tmp_path / "scores.rejected.csv"))
    scores = pd.read_csv(out)
    bad = sorted({*MISSING_X1, *GARBAGE_X2, *MISSING_C})
    assert scores["id"].tolist() == [f"s{i}" for i in range(N) if i not in bad]
    rejected = pd.read_csv(tmp_path / "scores.rejected.csv", keep_default_na=False)
    assert rejected.columns.tolist() == ["row", "column", "value", "reason"]
    assert sorted(set(rejected["row"])) == [i + 1 for i in bad]
    assert rejected.iloc[0].tolist() == [4, "x1", "", "missing value"]
    assert ((rejected["column"] == "x2") == (rejected["reason"] == "not a number")).all()
    # the kept rows score as with the clean file's same rows
    clean = tmp_path / "clean_scores.csv"
    assert predict.main(["--model", str(runs["skip"]), "--input", str(runs["clean"]),
                         "--output", str(clean)]) == 0
    full = pd.read_csv(clean).set_index("id")["propensity"]
    assert np.allclose(scores.set_index("id")["propensity"], full[scores["id"]], atol=1e-6)


def test_predict_skip_row_ids_are_the_files_data_rows(capsys, runs, tmp_path):
    source = tmp_path / "noid.csv"
    pd.read_csv(runs["holes"], dtype=str, keep_default_na=False).drop(columns="id").to_csv(
        source, index=False)
    status, out, err = run(capsys, predict.main, "--model", runs["skip"], "--input", source,
                           "--on-invalid", "skip", "--rejected", tmp_path / "bad.csv",
                           "--chunksize", "64")
    assert status == 0, err
    rows = pd.read_csv(io.StringIO(out))["row"].tolist()
    bad = {*MISSING_X1, *GARBAGE_X2, *MISSING_C}
    assert rows == [i + 1 for i in range(N) if i not in bad]
    assert len(pd.read_csv(tmp_path / "bad.csv")) == 45


def test_predict_skip_to_stdout_needs_rejected(capsys, runs, tmp_path):
    before = snapshot(tmp_path)
    status, out, err = run(capsys, predict.main, "--model", runs["skip"], "--input",
                           runs["holes"], "--on-invalid", "skip")
    assert status == 2 and out == ""
    one_line(err, "--rejected PATH", "stdout")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("extra", "needles"), [
    (("--rejected", "{input}"), ("--rejected", "is the input file")),
    (("--rejected", "{model}/weights.npz"), ("--rejected", "of the model")),
    (("--rejected", "{out}"), ("--rejected", "is the --output file")),
    (("--rejected", "{tmp}/nowhere/r.csv"), ("--rejected", "does not exist")),
])
def test_predict_skip_refuses_a_rejected_path_that_would_overwrite(capsys, runs, tmp_path,
                                                                   extra, needles):
    holes = tmp_path / "in.csv"
    holes.write_bytes(runs["holes"].read_bytes())
    fill = {"input": holes, "model": runs["skip"], "out": tmp_path / "s.csv", "tmp": tmp_path}
    before, model_before = snapshot(tmp_path), snapshot(runs["skip"])
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input", holes,
                         "--output", tmp_path / "s.csv", "--on-invalid", "skip",
                         *[e.format(**fill) for e in extra])
    assert status == 2
    one_line(err, *needles)
    assert snapshot(tmp_path) == before and snapshot(runs["skip"]) == model_before


def test_predict_skip_writes_nothing_when_the_file_fails_later(capsys, runs, tmp_path):
    """A ragged row after the bad cells: exit 1, neither the scores nor the rejected file."""
    source = tmp_path / "ragged.csv"
    source.write_text(runs["holes"].read_text() + "1,2,red,1,s999,extra\n")
    folder = tmp_path / "out"
    folder.mkdir()
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input", source,
                         "--output", folder / "s.csv", "--on-invalid", "skip")
    assert status == 1
    one_line(err, "ragged.csv", "data row 401", "malformed CSV")
    assert snapshot(folder) == {}


def test_predict_skip_with_every_row_bad_writes_nothing(capsys, runs, tmp_path):
    source = tmp_path / "allbad.csv"
    cells = pd.read_csv(runs["holes"], dtype=str, keep_default_na=False)
    cells["x1"] = ""
    cells.to_csv(source, index=False)
    folder = tmp_path / "out"
    folder.mkdir()
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input", source,
                         "--output", folder / "s.csv", "--on-invalid", "skip")
    assert status == 1
    one_line(err, "every data row has an invalid cell (400 rows", "data row 1", "'x1'")
    assert snapshot(folder) == {}


def test_predict_error_is_still_the_default(capsys, runs, tmp_path):
    status, _, err = run(capsys, predict.main, "--model", runs["impute"], "--input",
                         runs["holes"], "--output", tmp_path / "s.csv")
    assert status == 1
    one_line(err, "holes.csv", "data row 4", "column 'x1'", "missing value")
    assert not (tmp_path / "s.csv").exists()


def test_predict_impute_scores_missing_cells_like_the_model(capsys, runs, tmp_path):
    source = runs["missing"]
    cells = pd.read_csv(source, dtype=str, keep_default_na=False)
    out = tmp_path / "s.csv"
    status, _, err = run(capsys, predict.main, "--model", runs["impute"], "--input", source,
                         "--output", out, "--on-invalid", "impute")
    assert status == 0, err
    scores = pd.read_csv(out)
    assert len(scores) == N and scores["propensity"].between(0, 1).all()
    frame = cells.replace({"": np.nan, "NA": np.nan})
    expected = load_model(runs["impute"]).predict_proba(frame)
    assert np.allclose(scores["propensity"], expected, atol=1e-6)
    # garbage stays an error under impute
    status, _, err = run(capsys, predict.main, "--model", runs["impute"], "--input",
                         runs["holes"], "--output", tmp_path / "t.csv", "--on-invalid",
                         "impute")
    assert status == 1
    one_line(err, "data row 8", "'x2'", "not a number")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (("--on-invalid", "impute", "--input", "{holes}", "--model", "{skip}"),
     "was not trained with --on-invalid impute"),
    (("--rejected", "{tmp}/r.csv", "--input", "{holes}", "--model", "{skip}"),
     "--rejected only applies to --on-invalid skip"),
    (("--on-invalid", "skip", "--events", "{holes}", "--model", "{skip}", "--rejected",
      "{tmp}/r.csv"), "not --events"),
])
def test_predict_usage_mistakes(capsys, runs, tmp_path, args, needle):
    fill = {"holes": runs["holes"], "skip": runs["skip"], "tmp": tmp_path}
    status, _, err = run(capsys, predict.main, *[a.format(**fill) for a in args],
                         "--output", tmp_path / "s.csv")
    assert status == 2
    one_line(err, needle)
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_on_invalid_with_an_event_log(capsys, runs, tmp_path):
    status, _, err = run(capsys, train.main, "--events", runs["holes"], "--on-invalid", "skip",
                         "--output", tmp_path / "run")
    assert status == 2
    one_line(err, "--on-invalid applies to --input tables")
    assert not (tmp_path / "run").exists()


def test_predict_skip_full_disk_while_writing_scores_leaves_nothing(capsys, runs, tmp_path,
                                                                    monkeypatch):
    """The rejected file is complete in its temporary file when the scores' write fails (a
    full disk): exit 1, one line naming --output, and neither file nor a temporary left."""
    import errno

    from features import scoring

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scoring, "write_output", full_disk)
    folder = tmp_path / "out"
    folder.mkdir()
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input",
                         runs["holes"], "--output", folder / "s.csv", "--on-invalid", "skip")
    assert status == 1
    one_line(err, "No space left on device", folder / "s.csv")
    assert list(folder.iterdir()) == []


def _edit_lines(src: Path, dst: Path, edit) -> Path:
    lines = src.read_text().splitlines()
    edit(lines)
    dst.write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_reader_messages_are_the_same_for_train_and_predict(capsys, runs, tmp_path, mode):
    """One reader for both commands: 1e400 quoted as written; a short row, even one missing
    only the last (unread) field, malformed as a long one; the line of a row after a quoted
    line break; a table without the target column at all is scored."""
    def beyond(lines):  # data row 5: x1 (read as numbers in the clean table)
        lines[5] = "1e400," + lines[5].split(",", 1)[1]

    def short(lines):  # data row 6 lacks its last field ("id": read by neither command)
        lines[6] = lines[6].rsplit(",", 1)[0]

    def quoted_break(lines):  # data row 2 spans lines 3-4; data row 6 starts on line 8
        lines[2] = lines[2].replace(",s1", ',"s\n1"')
        lines[6] = "abc," + lines[6].split(",", 1)[1]

    cases = [(beyond, "data row 5 (line 6;", "column 'x1': value beyond float range "
              "(value: '1e400')"),
             (short, "data row 6 (line 7;", "malformed CSV: expected 5 fields, found 4"),
             (quoted_break, "data row 6 (line 8;", "column 'x1': not a number")]
    for edit, where, problem in cases:
        if mode == "skip" and edit is not short:
            continue  # a bad cell is left out; a malformed row stops every mode
        path = _edit_lines(runs["clean"], tmp_path / "t.csv", edit)
        for main, args in ((train.main, [*ROLES, *FAST, "--output", tmp_path / "run"]),
                           (predict.main, ["--model", runs["skip"], "--output",
                                           tmp_path / "o.csv"])):
            status, _, err = run(capsys, main, "--input", path, "--on-invalid", mode, *args)
            assert status == 1
            one_line(err, f"{path}, {where}", problem)
            assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    no_target = _edit_lines(runs["clean"], tmp_path / "t.csv",
                            lambda lines: lines.__setitem__(slice(None), [
                                ",".join(f for i, f in enumerate(line.split(",")) if i != 3)
                                for line in lines]))
    assert "y" not in no_target.read_text().split("\n", 1)[0]
    status, _, err = run(capsys, predict.main, "--model", runs["skip"], "--input", no_target,
                         "--on-invalid", mode, "--output", tmp_path / "o.csv")
    assert status == 0, err
    assert len(pd.read_csv(tmp_path / "o.csv")) == N
