"""The export command's refusals: what it may replace in ``--output``, the rows of
``--eval-csv`` and ``--calibration-csv``, and how its messages read (one line, ``PROG:
error:``, the user's paths, nothing written). In-process ``nn_core.export.cli.main``."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from export_helpers import UCI_CSV, train_uci_model

from nn_core.export import cli, formats

PROG = "python -m nn_core.export"  # the name when started as python -m nn_core.export


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small UCI model (4 epochs, 16-8 ReLU), saved once per module."""
    d = tmp_path_factory.mktemp("export_cli") / "model"
    train_uci_model(d)
    return d


@pytest.fixture(autouse=True)
def started_as_module(monkeypatch):
    """``sys.argv[0]`` as ``python -m nn_core.export`` has it, whatever started pytest."""
    monkeypatch.setattr(sys, "argv", [str(Path(cli.__file__).with_name("__main__.py"))])


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the SHA-256 of its bytes ("dir" for a folder)."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error(err: str, *needles) -> str:
    """One line on stderr, ``PROG: error: ...``, holding every needle; returns it."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def uci_lines(n: int) -> list[str]:
    """The header and the first ``n - 1`` data lines of the bundled UCI table."""
    return UCI_CSV.read_text(encoding="utf-8").splitlines()[:n]


def with_cell(line: str, header: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[header.split(",").index(column)] = value
    return ",".join(fields)


# ------------------------------------------------------------------ what --output may hold


@pytest.mark.parametrize("fmt", [["--format", "c"], ["--format", "python", "--name", "model"]])
def test_output_that_is_another_model_dir_is_refused(model_dir, tmp_path, capsys, fmt):
    """Finding 2: both formats write model.json; a copy of the model directory keeps its."""
    other = tmp_path / "copy"
    shutil.copytree(model_dir, other)
    before = snapshot(tmp_path)
    status, out, err = run(capsys, "--model", model_dir, *fmt, "--output", other)
    assert status == 2 and out == ""
    assert_one_error(err, f"--output {other}", "is a model directory", "model.json")
    assert snapshot(tmp_path) == before


def test_a_damaged_model_dir_is_still_a_model_dir(model_dir, tmp_path, capsys):
    """A folder left with only a model's model.json (its weights lost) is protected too."""
    other = tmp_path / "damaged"
    other.mkdir()
    shutil.copy(model_dir / "model.json", other / "model.json")
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output", other)
    assert status == 2
    assert_one_error(err, "is a model directory (it holds model.json)")
    assert snapshot(tmp_path) == before


def test_only_an_earlier_export_of_the_same_name_is_replaced(model_dir, tmp_path, capsys):
    """An export replaces its own earlier files (docs/embedded.md), no other file: a
    model.json or NAME.py that no export wrote stays, and nothing is written."""
    out = tmp_path / "out"
    assert run(capsys, "--model", model_dir, "--format", "c", "--output", out)[0] == 0
    first = json.loads((out / "model.json").read_text())
    assert first["format"] == formats.EXPORT_FORMAT and first["name"] == "model"
    (out / "model.c").write_text("/* edited */\n")
    # the same export again: its model.c, model.h and model.json are replaced
    assert run(capsys, "--model", model_dir, "--format", "c", "--output", out)[0] == 0
    assert (out / "model.c").read_text() != "/* edited */\n"
    # a user's model_np.py (not an export's) and a model.json of another program stay
    (out / "model_np.py").write_text("print('mine')\n")
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "--model", model_dir, "--format", "python", "--output", out)
    assert status == 1
    assert_one_error(err, f"--output {out}", "model_np.py exists",
                     "not a file of an earlier export named 'model_np'")
    assert snapshot(tmp_path) == before
    (out / "model.json").write_text('{"format": "someone-else"}\n')
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output", out)
    assert status == 1
    assert_one_error(err, "exists and is not a file of an earlier export named 'model'")
    assert snapshot(tmp_path) == before


def test_an_output_that_cannot_be_written_is_named_as_given(model_dir, tmp_path, capsys,
                                                           monkeypatch):
    """Finding 10: the staging folder's name (.export.PID-XXXX.partial) is internal; the
    message names the user's --output."""
    out = tmp_path / "out"
    out.mkdir()

    mkdtemp = formats.tempfile.mkdtemp

    def refused(suffix=None, prefix=None, dir=None):
        if dir is None or Path(dir) != out:  # another temporary folder (the ARM build's)
            return mkdtemp(suffix, prefix, dir)
        raise PermissionError(errno.EPERM, "Operation not permitted",
                              str(Path(dir) / f"{prefix}abc123{suffix}"))

    monkeypatch.setattr(formats.tempfile, "mkdtemp", refused)
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output", out)
    assert status == 1
    line = assert_one_error(err, f"--output {out}: Operation not permitted")
    assert ".export." not in line and ".partial" not in line
    assert list(out.iterdir()) == []


def test_every_message_starts_with_the_program_name(model_dir, tmp_path, capsys):
    """Finding 11: as train.py and predict.py (``train.py: error: ...``) and argparse."""
    status, _, err = run(capsys, "--model", tmp_path / "none", "--format", "c",
                         "--output", tmp_path / "o")
    assert status == 1
    assert_one_error(err, f"{tmp_path / 'none'}: model directory not found")
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output", model_dir)
    assert status == 2
    assert_one_error(err, "is the model directory")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ the rows of the CSVs


@pytest.mark.parametrize(("column", "value", "needle"), [
    ("Administrative_Duration", "-5", "negative value -5 in a log1p column"),
    ("ProductRelated", "1e400", "not a finite number"),
    ("ExitRates", "abc", "not a finite number (value: 'abc')"),
])
def test_a_bad_eval_cell_is_an_error_not_a_dropped_row(model_dir, tmp_path, capsys, column,
                                                       value, needle):
    """Finding 6: a bad cell prints one line naming file, row and column (exit 1, nothing
    written), by the model's rules (``Preprocessing.inputs``, as predict.py), where the
    exporter used to leave the row out and report the AUC of the others."""
    lines = uci_lines(300)
    lines[7] = with_cell(lines[7], lines[0], column, value)  # data row 7
    csv_path = tmp_path / "eval.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "--model", model_dir, "--format", "c-int8", "--output",
                              out, "--eval-csv", csv_path)
    assert status == 1 and "ROC-AUC" not in stdout
    assert_one_error(err, f"{csv_path}: row 7, column {column!r}", needle)
    assert not out.exists()
    # the same cell in --calibration-csv, and with --test-vectors, is the same error
    status, _, err = run(capsys, "--model", model_dir, "--format", "c-int8-full", "--output",
                         out, "--calibration-csv", csv_path)
    assert status == 1
    assert_one_error(err, f"{csv_path}: row 7, column {column!r}", needle)
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output", out,
                         "--eval-csv", csv_path, "--test-vectors", "3")
    assert status == 1
    assert_one_error(err, f"{csv_path}: row 7, column {column!r}", needle)
    assert not out.exists()


def test_one_class_eval_csv_names_the_file(model_dir, tmp_path, capsys):
    lines = uci_lines(400)
    negatives = [line for line in lines[1:] if line.endswith("FALSE")][:49]
    csv_path = tmp_path / "negatives.csv"
    csv_path.write_text("\n".join([lines[0], *negatives]) + "\n")
    status, _, err = run(capsys, "--model", model_dir, "--format", "c", "--output",
                         tmp_path / "out", "--eval-csv", csv_path)
    assert status == 1
    assert_one_error(err, f"--eval-csv {csv_path}", "needs both classes",
                     "0 positives, 49 negatives")
    assert not (tmp_path / "out").exists()
