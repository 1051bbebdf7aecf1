"""features/training_run.py: train.py's work from Python, without a command line."""

import errno
import json
from pathlib import Path

import pytest

from features import training_run
from features.training_run import RunDirError, RunOptions, train_run
from nn_core.selection import NetConfig

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"


def test_an_output_that_is_not_empty_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="already exists and is not an empty directory"):
        train_run(NetConfig(), object(), out)  # the data is never touched
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine.txt", "run"]


def test_a_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError) as caught:
        train_run(NetConfig(), object(), tmp_path / "file" / "run")
    assert str(caught.value) == (f"{tmp_path / 'file' / 'run'}: cannot create it: "
                                 f"{tmp_path / 'file'} exists and is not a directory")


@pytest.mark.parametrize("link", [False, True])
def test_an_output_that_is_a_file_is_refused_as_one(tmp_path, link):
    """A file (or a link) is not "a directory that is not empty": the message says what it
    is, and it is left as it was."""
    (tmp_path / "b2.csv").write_text("keep me")
    out = tmp_path / "b2.csv"
    if link:
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "b2.csv")
    what = "a symbolic link" if link else "a file, not a directory"
    with pytest.raises(RunDirError, match=f"^{out}: is {what} \\(a run directory must be "
                       "new or an empty directory"):
        train_run(NetConfig(), object(), out)  # the data is never touched
    assert (tmp_path / "b2.csv").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b2.csv"] + (["link"] if link else [])


class _FailingData:
    """A data source whose split fails as ``Preprocessor.fit`` does on its training rows."""

    def __init__(self, error: Exception):
        self.info = {"kind": "table", "path": "shop.csv"}
        self.error = error

    def split(self, seed):
        raise self.error


def test_an_error_fitting_the_preprocessing_names_the_file(tmp_path):
    from features.datasets import SplitError
    from features.tabular import DataError

    fit = ValueError("column 'b': values too large to standardise (largest |value| 1e+200)")
    with pytest.raises(DataError) as caught:
        train_run(NetConfig(backend="numpy"), _FailingData(fit), tmp_path / "run")
    assert str(caught.value) == ("shop.csv: column 'b': values too large to standardise "
                                 "(largest |value| 1e+200)")
    for named in (DataError("shop.csv", "bad", row=3), SplitError("shop.csv: no buyers")):
        with pytest.raises(type(named)) as caught:  # already naming the file: unchanged
            train_run(NetConfig(backend="numpy"), _FailingData(named), tmp_path / "run")
        assert caught.value is named
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["disk full", "interrupted"])
def test_a_failed_run_leaves_nothing(failure, tmp_path, monkeypatch):
    """Whatever stops the run after files were written removes them all; an OS error names
    the file under the directory asked for, not under the temporary one."""
    def write_run(folder, *args):
        (folder / "model.json").write_text("{}")
        if failure == "interrupted":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "weights.npz"))

    monkeypatch.setattr(training_run, "write_run", write_run)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt if failure == "interrupted" else OSError) as caught:
        train_run(NetConfig(), object(), out)
    if failure == "disk full":
        assert caught.value.filename == str(out / "weights.npz")
        assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_run_writes_what_train_py_writes(tmp_path, capsys):
    """The same settings from Python and from the command line: the same models byte for
    byte and the same metrics; without ``settings`` no config.json, without ``command`` no
    such key."""
    from features.datasets import TableData
    from features.tabular import Schema
    from propensity import train

    assert train.main(["--input", str(UCI), "--epochs", "2", "--seeds", "0,1",
                       "--importance-repeats", "0", "--quiet",
                       "--output", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    result = train_run(NetConfig(epochs=2), TableData(UCI, Schema.uci()), tmp_path / "py",
                       RunOptions(seeds=(0, 1), importance_repeats=0))
    assert result.out == tmp_path / "py" and result.latest is None
    assert printed.startswith("\n".join(training_run.summary_lines(result.metrics)) + "\n")
    cli = {p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*")}
    py = {p.relative_to(tmp_path / "py") for p in (tmp_path / "py").rglob("*")}
    assert py == cli - {Path("config.json")}
    for name in sorted(py - {Path("metrics.json")}):
        if (tmp_path / "py" / name).is_file() and name.suffix != ".png":
            assert (tmp_path / "py" / name).read_bytes() == \
                (tmp_path / "cli" / name).read_bytes(), name
    want = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    got = json.loads((tmp_path / "py" / "metrics.json").read_text())
    assert got == result.metrics
    for key in ("created", "seconds", "command", "files"):
        want.pop(key, None)
        got.pop(key, None)
    assert got == want
    assert "config.json" not in result.metrics["files"] and "command" not in result.metrics
