"""Issue 13: no data loss, no traceback and no silently wrong result from train.py, predict.py,
the exporter, the event-log reader, the model-directory reader and the Python API, with faults
(SIGTERM, kill -9, a full disk through a file-size limit, concurrent runs, closed pipes).

Each case asserts the exit status (or the exception), one line naming the file, row, column
or argument, no traceback, and that no file was created or changed (listings and hashes of the
folders involved). Cases that run whole commands are marked slow (left out of
``-m "not slow"``); the in-process ones are fast.
"""

import hashlib
import io
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"
FORMATS = ("c", "c-int8", "python", "python-pure")


def run_cli(*args, cwd=REPO, timeout=120, file_size_limit=None):
    """``python ARGS...`` (a script path or ``-m module``) with the repository importable;
    with ``file_size_limit`` (bytes) the process may not write a file larger than that
    (``RLIMIT_FSIZE``, with SIGXFSZ ignored so that writes fail with EFBIG: a full disk)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env,
                          preexec_fn=None if file_size_limit is None else limit)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed): file hash, link target or kind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link -> " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"mode {stat.S_IFMT(st.st_mode):o}"
    return out


def assert_refused(res, status, *needles):
    """Exit ``status``, exactly one line on stderr containing every needle, no traceback."""
    assert res.returncode == status, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small UCI model (every 20th row, 3 epochs) written by save_model, once per module."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, load_table
    from nn_core import MLP
    from nn_core.modeldir import save_model

    tmp = tmp_path_factory.mktemp("model")
    lines = UCI.read_text().splitlines()
    (tmp / "train.csv").write_text("\n".join([lines[0], *lines[1:][::20]]) + "\n")
    frame = load_table(tmp / "train.csv", Schema.uci())
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(frame)
    X = pre.transform(frame)
    net = MLP(X.shape[1], (4,), backend="numpy")
    net.fit(X, frame["Revenue"].to_numpy(dtype=np.int8), epochs=3, batch_size=64, lr=1e-2)
    return save_model(tmp / "run", net, pre)


@pytest.fixture()
def scores_csv(tmp_path):
    """20 UCI rows to score, in a folder of their own."""
    lines = UCI.read_text().splitlines()
    path = tmp_path / "s.csv"
    path.write_text("\n".join([lines[0], *lines[1:][5::600][:20]]) + "\n")
    return path


# ------------------------------------------------------------------- predict.py --output


@pytest.mark.slow
@pytest.mark.parametrize("how", ["same", "relative", "dotdot", "symlink", "hardlink"])
def test_predict_output_is_input_refused(model_dir, scores_csv, how):
    folder = scores_csv.parent
    if how == "same":
        output = scores_csv
    elif how == "relative":
        output = "s.csv"
    elif how == "dotdot":
        (folder / "sub").mkdir()
        output = Path("sub") / ".." / "s.csv"
    elif how == "symlink":
        output = folder / "link.csv"
        output.symlink_to(scores_csv)
    else:
        output = folder / "hard.csv"
        os.link(scores_csv, output)
    before = snapshot(folder)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", output, cwd=folder)
    assert_refused(res, 2, "--output", output, "is the input file")
    assert snapshot(folder) == before


@pytest.mark.slow
def test_predict_output_is_events_input_refused(model_dir, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,category_id,behavior,timestamp\n1,2,3,pv,1511544070\n")
    before = snapshot(tmp_path)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--events", log, "--cutoff",
                  "2017-11-26", "--output", log)
    assert_refused(res, 2, "--output", log, "is the input file")
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model.json", "weights.npz", "preprocess.json"])
def test_predict_output_is_model_file_refused(model_dir, scores_csv, name):
    before = snapshot(model_dir)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", model_dir / name)
    assert_refused(res, 2, "--output", name)
    assert snapshot(model_dir) == before


@pytest.mark.slow
def test_predict_output_dev_null_and_link_to_it(model_dir, scores_csv):
    folder = scores_csv.parent
    link = folder / "null.csv"
    link.symlink_to("/dev/null")
    before = snapshot(folder)
    for output in ("/dev/null", link):
        res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                      "--output", output)
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert snapshot(folder) == before  # no temporary file left behind


@pytest.mark.slow
def test_predict_output_fifo_is_streamed_into(model_dir, scores_csv):
    folder = scores_csv.parent
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    received = []

    def reader():
        with open(fifo) as fh:
            received.append(fh.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    before = snapshot(folder)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", fifo)
    thread.join(timeout=30)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    table = pd.read_csv(io.StringIO(received[0]))
    assert list(table.columns) == ["row", "propensity", "rank", "decile"]
    assert len(table) == 20
    assert snapshot(folder) == before


@pytest.mark.slow
def test_predict_output_symlink_to_regular_file_stays_a_link(model_dir, scores_csv):
    folder = scores_csv.parent
    target = folder / "scores.csv"
    target.write_text("old\n")
    link = folder / "latest.csv"
    link.symlink_to("scores.csv")
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", link)
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == "scores.csv"
    assert target.read_text().startswith("row,propensity,rank,decile\n")
    assert sorted(p.name for p in folder.iterdir()) == ["latest.csv", "s.csv", "scores.csv"]


# ------------------------------------------------------------ predict.py: training ranges


@pytest.mark.slow
def test_predict_applies_training_ranges_of_uci_model(model_dir, scores_csv, tmp_path):
    frame = pd.read_csv(scores_csv, dtype=str, keep_default_na=False)
    frame.loc[3, "BounceRates"] = "7.5"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    before = snapshot(tmp_path)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", bad,
                  "--output", tmp_path / "out.csv")
    assert_refused(res, 1, bad, "data row 4", "'BounceRates'", "maximum 1", "7.5")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------- export --out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("where", ["model_dir", "inside", "nested_new", "symlink"])
def test_export_into_model_dir_refused(model_dir, tmp_path, fmt, where):
    if where == "model_dir":
        out = model_dir
    elif where == "inside":
        out = model_dir / "export"
    elif where == "nested_new":
        out = model_dir / "a" / "b"
    else:
        out = tmp_path / "link"
        out.symlink_to(model_dir)
    before = snapshot(model_dir)
    args = ["--name", "preprocess"] if fmt.startswith("python") else []
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", fmt, "--output", out,
                  *args)
    assert_refused(res, 2, "--output", out, "model directory")
    assert snapshot(model_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["numpy", "pandas", "json", "math", "sys", "nn_core",
                                  "features", "stdio", "stdint"])
def test_export_name_that_shadows_a_module_refused(model_dir, tmp_path, name):
    out = tmp_path / "out"
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "python", "--output",
                  out,
                  "--name", name)
    assert_refused(res, 1, "--name", repr(name))
    assert not out.exists()


@pytest.mark.slow
def test_export_refuses_to_replace_eval_csv(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    eval_csv = out / "model_np.json"
    lines = UCI.read_text().splitlines()
    eval_csv.write_text("\n".join(lines[:30]) + "\n")
    before = snapshot(tmp_path)
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "python", "--output",
                  out,
                  "--eval-csv", eval_csv)
    assert_refused(res, 1, "--eval-csv", "model_np.json")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------- train.py: non-finite fitted state


def _tiny_table(path: Path, x_values) -> None:
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=n).round(3).astype(object)
    for i, v in enumerate(x_values):
        x[i] = v
    pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], n),
                  "y": np.tile([0, 1], n // 2)}).to_csv(path, index=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "values, what",
    [(["1e308"], "standard deviation"),  # one huge value: (x - mean)**2 overflows
     (["1e308", "1e308"], "mean"),  # the sum overflows
     (["1e160", "-1e160"], "standard deviation")],  # squares overflow
)
def test_train_refuses_values_too_large_to_standardise(tmp_path, values, what):
    data = tmp_path / "t.csv"
    _tiny_table(data, values)
    before = snapshot(tmp_path)
    res = run_cli(REPO / "train.py", "--input", data, "--target", "y", "--numeric", "x",
                  "--categorical", "c", "--epochs", "1", "--quiet", "--output", tmp_path / "run")
    assert_refused(res, 1, "train.py: error:", "column 'x'", what, "not finite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("values", [["1e308"], ["1e160", "-1e160"]])
def test_preprocessor_fit_refuses_non_finite_state(values):
    from features.tabular import Preprocessor

    x = np.r_[np.array(values, dtype=float), -1.0, 0.5]
    with pytest.raises(ValueError, match=r"column 'x'.*not finite"):
        Preprocessor(["x"]).fit(pd.DataFrame({"x": x}))


def test_save_model_refuses_non_finite_json(tmp_path):
    from features.tabular import Preprocessor
    from nn_core import MLP
    from nn_core.modeldir import save_model

    pre = Preprocessor(["x"]).fit(pd.DataFrame({"x": [-1.0, 0.5, 2.0]}))
    pre.columns[0]["std"] = float("inf")
    with pytest.raises(ValueError, match=r"preprocess\.json.*NaN or infinite"):
        save_model(tmp_path / "m", MLP(1, (2,), backend="numpy"), pre)
    assert list((tmp_path / "m").iterdir()) == []  # nothing written, not even the weights


# --------------------------------------------------------------------- MLP constructor


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_inputs": 5, "hidden": (2.7,)}, r"hidden\[0\] must be an integer.*2\.7"),
        ({"n_inputs": 5, "hidden": (4, True)}, r"hidden\[1\] must be an integer"),
        ({"n_inputs": 5, "hidden": ("8",)}, r"hidden\[0\] must be an integer"),
        ({"n_inputs": 5, "hidden": 64}, "hidden must be a sequence"),
        ({"n_inputs": 5, "hidden": "64"}, "hidden must be a sequence"),
        ({"n_inputs": 5, "hidden": (10**9,)}, "hidden layer widths must be <= 65,536"),
        ({"n_inputs": 5, "hidden": (0,)}, "hidden layer widths must be >= 1"),
        ({"n_inputs": "five"}, "n_inputs must be an integer.*'five'"),
        ({"n_inputs": 5.5}, "n_inputs must be an integer"),
        ({"n_inputs": True}, "n_inputs must be an integer"),
        ({"n_inputs": 10**7}, "n_inputs must be <= 1,048,576"),
        ({"n_inputs": 60_000, "hidden": (60_000, 60_000)}, "parameters; at most"),
        ({"n_inputs": 5, "seed": -1}, "seed must be >= 0"),
        ({"n_inputs": 5, "seed": 1.5}, "seed must be an integer"),
        ({"n_inputs": 5, "dropout": "0.1"}, "dropout must be a number"),
        ({"n_inputs": 5, "dropout": float("nan")}, "dropout must be in"),
    ],
)
def test_mlp_constructor_refuses_bad_sizes(kwargs, match):
    from nn_core import MLP

    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_mlp_constructor_accepts_numpy_and_integral_float_widths():
    from nn_core import MLP

    m = MLP(np.int64(5), hidden=(np.int32(3), 2.0), seed=np.uint8(1), backend="numpy")
    assert m.n_inputs == 5 and m.hidden == (3, 2) and m.seed == 1
    assert all(type(h) is int for h in m.hidden)


# =========================================================================================
# Issue 13, second part: every entry point, the class of each listed case.
# =========================================================================================


def assert_one_line(text, *needles):
    """``text`` (stderr) is one line holding every needle, and no traceback."""
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def call_main(main, argv, capsys):
    """Run a command's ``main(argv)`` in this process; (exit status, stderr)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


@pytest.fixture()
def table(tmp_path):
    """A 60-row table (x numeric, c categorical, y target) in a folder of its own."""
    path = tmp_path / "t.csv"
    _tiny_table(path, [])
    return path


def train_argv(data, out, *extra):
    return ["--input", data, "--target", "y", "--numeric", "x", "--categorical", "c",
            "--epochs", "1", "--quiet", "--output", out, *extra]


# ------------------------------------------------------------ train.py flags (in process)


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--weight-decay", "inf"], ["--weight-decay", "finite", "inf"]),
        (["--weight-decay", "-1"], ["--weight-decay", ">= 0"]),
        (["--lr", "nan"], ["--lr", "nan"]),
        (["--lr", "0"], ["--lr", "> 0"]),
        (["--l2", "inf"], ["--l2", "finite"]),
        (["--optimizer", "momentum", "--momentum", "nan"], ["--momentum", "nan"]),
        (["--momentum", "0.5"], ["--momentum", "--optimizer momentum or nesterov", "adam"]),
        (["--dropout", "1"], ["--dropout", "[0, 1)"]),
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--batch-size", "-3"], ["--batch-size", ">= 1"]),
        (["--patience", "0"], ["--patience"]),
        (["--hidden", "1000000000"], ["--hidden", "65,536", "widest layer"]),
        (["--hidden", ",".join(["2"] * 300)], ["--hidden", "300 layers", "256"]),
        (["--hidden", "0"], ["--hidden", ">= 1"]),
        (["--seeds", "-1"], ["--seeds", "-1"]),
        (["--threads", "100000"], ["--threads", "100000"]),
        (["--tune", "-2"], ["--tune", "-2"]),
        (["--hidden", "abc"], ["--hidden", "'abc'"]),
        (["--epochs", "ten"], ["--epochs", "'ten'"]),
        (["--lr", ""], ["--lr"]),
        (["--split", "0.7,nan,0.3"], ["--split"]),
        (["--split", "0.5,0.5"], ["--split"]),
        (["--pos-weight", "1e308"], ["--pos-weight", "1e308"]),
        (["--pos-weight", "nan"], ["--pos-weight"]),
        (["--activation", "banana"], ["--activation", "'banana'"]),
        (["--no-such-flag"], ["--no-such-flag"]),
    ],
)
def test_train_flag_refused_naming_it(table, capsys, flags, needles):
    from propensity.train import main

    folder = table.parent
    before = snapshot(folder)
    status, err = call_main(main, train_argv(table, folder / "run", *flags), capsys)
    assert status == 2, err
    assert_one_line(err, "train.py: error:", *needles)
    assert snapshot(folder) == before


@pytest.mark.parametrize("how", ["under_a_file", "in_proc", "is_a_file", "non_empty"])
def test_train_out_that_cannot_be_a_run_directory(table, capsys, how):
    from propensity.train import main

    folder = table.parent
    (folder / "full").mkdir()
    (folder / "full" / "keep.txt").write_text("mine\n")
    out = {"under_a_file": table / "run", "in_proc": Path("/proc/self/no/run"),
           "is_a_file": table, "non_empty": folder / "full"}[how]
    before = snapshot(folder)
    status, err = call_main(main, train_argv(table, out), capsys)
    assert status == 2, err
    assert_one_line(err, "train.py: error: --out", out)
    assert snapshot(folder) == before


def test_train_id_like_categorical_is_capped(tmp_path, capsys):
    from features.tabular import MAX_CATEGORIES
    from propensity.train import main

    n = 2 * MAX_CATEGORIES + 200
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=n).round(3), "sid": [f"s{i}" for i in range(n)],
                  "y": np.tile([0, 1], n // 2)}).to_csv(tmp_path / "ids.csv", index=False)
    before = snapshot(tmp_path)
    status, err = call_main(main, ["--input", tmp_path / "ids.csv", "--target", "y",
                                   "--numeric", "x", "--categorical", "sid", "--quiet",
                                   "--output", tmp_path / "run"], capsys)
    assert status == 1
    assert_one_line(err, "column 'sid'", f"at most {MAX_CATEGORIES:,} categories",
                    "--id-column")
    assert snapshot(tmp_path) == before


def test_preprocessor_caps_categories_before_building_the_one_hot():
    from features.tabular import MAX_CATEGORIES, Preprocessor

    ok = pd.DataFrame({"c": [str(i) for i in range(MAX_CATEGORIES)]})
    assert Preprocessor([], ["c"]).fit(ok).n_features == MAX_CATEGORIES + 1
    too_many = pd.DataFrame({"c": [str(i) for i in range(MAX_CATEGORIES + 1)]})
    with pytest.raises(ValueError, match=r"column 'c': 1,001 distinct values"):
        Preprocessor([], ["c"]).fit(too_many)


def _find_seed(y, row, part):
    """A seed whose stratified split puts 0-based ``row`` into ``part`` (1: dev, 2: test)."""
    from features.tabular import stratified_split

    return next(s for s in range(100) if row in stratified_split(y, s)[part])


@pytest.mark.parametrize("value, what", [("-1", "negative value"),
                                         ("1e300", "not a finite float32")])
def test_train_names_the_file_row_not_the_split_row(tmp_path, capsys, value, what):
    """A value in the dev part that the transform fitted on train cannot take: the message
    names the file's data row (not a row of the dev part)."""
    from propensity.train import main

    n, row = 200, 137
    rng = np.random.default_rng(1)
    # all >= 0 (log1p is chosen) for the negative value; around 0 (no log1p) for the big one
    x = (rng.uniform(0, 5, n) if value == "-1" else rng.normal(size=n)).round(3).astype(object)
    x[row] = value
    y = np.tile([0, 1], n // 2)
    pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], n), "y": y}).to_csv(
        tmp_path / "t.csv", index=False)
    seed = _find_seed(y, row, 1)
    before = snapshot(tmp_path)
    status, err = call_main(main, train_argv(tmp_path / "t.csv", tmp_path / "run", "--seeds",
                                             seed), capsys)
    assert status == 1
    assert_one_line(err, "t.csv", f"data row {row + 1}", "column 'x'", what)
    assert snapshot(tmp_path) == before


def test_weight_decay_inf_is_not_called_divergence():
    from nn_core import MLP

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.tile([0, 1], 10)
    with pytest.raises(ValueError, match=r"^weight_decay must be a finite number >= 0, got inf"):
        MLP(3, (2,), backend="numpy").fit(X, y, weight_decay=float("inf"))


# --------------------------------------------------------------- Python API (in process)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": "0.1"}, r"^lr must be a finite number"),
        ({"lr": None}, r"^lr must be a finite number"),
        ({"l2": float("nan")}, r"^l2 must be a finite number"),
        ({"epochs": 2.5}, r"^epochs must be an integer"),
        ({"epochs": -1}, r"^epochs must be >= 1"),
        ({"epochs": 0}, r"^epochs must be >= 1"),
        ({"batch_size": 0}, r"^batch_size must be >= 1"),
        ({"shuffle_seed": -1}, r"^shuffle_seed must be >= 0"),
        ({"threads": 0}, r"^threads must be >= 1"),
        ({"eps": float("nan")}, r"^eps must be a finite number > 0"),
        ({"momentum": None, "optimizer": "momentum"}, r"^momentum must be a number"),
        ({"betas": (1.0, 0.9)}, r"^Adam betas must be in \[0, 1\)"),
        ({"betas": 0.9}, r"^betas must be a pair"),
        ({"schedule": "cosine", "lr_min": float("nan")}, r"lr_min >= 0"),
        ({"optimizer": "banana"}, r"unknown optimizer 'banana'"),
    ],
)
def test_fit_argument_refused_naming_it(kwargs, match):
    from nn_core import MLP

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.tile([0, 1], 10)
    m = MLP(3, (2,), backend="numpy")
    theta = m.theta.copy()
    with pytest.raises(ValueError, match=match):
        m.fit(X, y, **kwargs)
    assert np.array_equal(m.theta, theta)  # nothing trained


def test_fit_batch_larger_than_the_data_is_one_batch():
    from nn_core import MLP

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.tile([0, 1], 10)
    a, b = MLP(3, (2,), backend="numpy"), MLP(3, (2,), backend="numpy")
    a.fit(X, y, epochs=2, batch_size=20)
    b.fit(X, y, epochs=2, batch_size=10**10)  # no buffer of 10**10 rows
    assert np.array_equal(a.theta, b.theta)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda d: __import__("nn_core").load_model(None), TypeError, "dirpath must be a path"),
        (lambda d: __import__("nn_core").load_model(d, backend="torch"), ValueError,
         "unknown backend 'torch'"),
        (lambda d: __import__("nn_core.modeldir").modeldir.save_model(d / "m", None), TypeError,
         "network must be an nn_core.MLP"),
        (lambda d: __import__("nn_core").gradcheck(None, np.zeros((2, 1)), [0, 1]), TypeError,
         "model must be an nn_core.MLP"),
        (lambda d: __import__("nn_core").gradcheck(
            __import__("nn_core").MLP(1, (), backend="numpy"), np.zeros((2, 1)), [0, 1], h=-1),
         ValueError, "h must be a finite number"),
        (lambda d: __import__("nn_core").MLP(3, hidden=(1,) * 1000), ValueError,
         "hidden has 1,000 layers; at most 256"),
    ],
    ids=["load_none", "load_backend", "save_none", "gradcheck_none", "gradcheck_h", "deep"],
)
def test_python_api_argument_errors_name_the_argument(model_dir, tmp_path, call, error, match):
    before = snapshot(model_dir)
    with pytest.raises(error, match=match):
        call(model_dir)
    assert snapshot(model_dir) == before
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ model files (in process)


def _copy_model(model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    return d


def _edit_meta(d, **changes):
    meta = json.loads((d / "model.json").read_text())
    for k, v in changes.items():
        if v is KeyError:
            meta.pop(k)
        else:
            meta[k] = v
    # (json.dumps of a 4,000-digit integer needs a higher str(int) limit than the default)
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        (d / "model.json").write_text(json.dumps(meta))
    finally:
        sys.set_int_max_str_digits(limit)


def _write_npz(d, members: dict[str, bytes]):
    """A weights.npz of raw .npy members, with model.json's hash fixed (as an attacker would)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    (d / "weights.npz").write_bytes(blob)
    _edit_meta(d, weights_sha256=hashlib.sha256(blob).hexdigest())


def _npy(array=None, header_shape=None, dtype="<f4"):
    out = io.BytesIO()
    if header_shape is None:
        np.lib.format.write_array(out, array, allow_pickle=False)
    else:  # only a header: what it claims is never read
        np.lib.format.write_array_header_1_0(
            out, {"descr": dtype, "fortran_order": False, "shape": header_shape})
        out.write(b"\0" * 64)
    return out.getvalue()


def _arrays(d):
    with np.load(d / "weights.npz") as npz:
        return {f"{k}.npy": _npy(npz[k]) for k in npz.files}


MODEL_JSON_CASES = {
    "hidden_int": ({"hidden": 64}, "'hidden' must be a list"),
    "hidden_strings": ({"hidden": ["4"]}, "'hidden'[0] must be an integer"),
    "hidden_float": ({"hidden": [4.0]}, "'hidden'[0] must be an integer"),
    "hidden_huge": ({"hidden": [10**9]}, "'hidden'[0] must be an integer in [1, 65,536]"),
    "hidden_deep": ({"hidden": [4] * 300}, "at most 256 layer widths"),
    "dtype_banana": ({"dtype": "banana"}, "'dtype' must be one of"),
    "dtype_list": ({"dtype": ["float32"]}, "'dtype' must be one of"),
    "activation_none": ({"activation": None}, "'activation' must be one of"),
    "n_inputs_missing": ({"n_inputs": KeyError}, "missing key 'n_inputs'"),
    "n_inputs_string": ({"n_inputs": "75"}, "'n_inputs' must be an integer"),
    "n_inputs_bool": ({"n_inputs": True}, "'n_inputs' must be an integer"),
    "n_inputs_huge": ({"n_inputs": 10**4000}, "'n_inputs' must be an integer in"),
    "seed_negative": ({"seed": -1}, "'seed' must be an integer"),
    "dropout_text": ({"dropout": "0.1"}, "'dropout' must be a number"),
    "sha_not_hex": ({"weights_sha256": "z" * 64}, "'weights_sha256' must be 64"),
    "extra_list": ({"extra": [1]}, "'extra' must be an object"),
    "params_over_limit": ({"n_inputs": 1_000_000, "hidden": [65_536]},
                          "parameters; at most 2,147,483,648"),
}


@pytest.mark.parametrize("case", list(MODEL_JSON_CASES))
def test_model_json_with_wrong_types_names_file_and_key(model_dir, tmp_path, case):
    from nn_core import load_model
    from nn_core.io import ModelFileError

    changes, needle = MODEL_JSON_CASES[case]
    d = _copy_model(model_dir, tmp_path)
    _edit_meta(d, **changes)
    before = snapshot(tmp_path)
    with pytest.raises(ModelFileError) as info:
        load_model(d)
    assert_one_line(str(info.value), d / "model.json", needle)
    assert snapshot(tmp_path) == before


MODEL_FILE_CASES = {
    "nan_constant": ("model.json", lambda d: (d / "model.json").write_text(
        (d / "model.json").read_text().replace('"dropout": 0.0', '"dropout": NaN')),
        "NaN is not a JSON value"),
    "deeply_nested": ("model.json", lambda d: (d / "model.json").write_text(
        "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "model_json_too_big": ("model.json", lambda d: (d / "model.json").write_text(
        " " * (2 << 20) + "{}"), "a model file is at most 1,048,576 bytes"),
    "model_json_not_utf8": ("model.json", lambda d: (d / "model.json").write_bytes(
        b'{"format": "\xff\xfe"}'), "not UTF-8"),
    "header_claims_huge_shape": ("weights.npz", lambda d: _write_npz(d, {
        **_arrays(d), "W0.npy": _npy(header_shape=(75, 10**9))}), "(75, 1000000000)"),
    "header_object_dtype": ("weights.npz", lambda d: _write_npz(d, {
        **_arrays(d), "b0.npy": _npy(header_shape=(4,), dtype="|O")}), "refused"),
    "header_float64": ("weights.npz", lambda d: _write_npz(d, {
        **_arrays(d), "b0.npy": _npy(np.zeros(4))}), "b0 is float64, not float32"),
    "extra_array": ("weights.npz", lambda d: _write_npz(d, {
        **_arrays(d), "W9.npy": _npy(np.zeros(2, np.float32))}), "unexpected arrays ['W9']"),
    "missing_array": ("weights.npz", lambda d: _write_npz(d, {
        k: v for k, v in _arrays(d).items() if k != "b1.npy"}), "missing arrays ['b1']"),
    "truncated_member": ("weights.npz", lambda d: _write_npz(d, {
        **_arrays(d), "W0.npy": _arrays(d)["W0.npy"][:200]}), "weights.npz"),
    "truncated_with_hash": ("weights.npz", lambda d: _write_npz(d, {}) or (
        d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:10]), "weights.npz"),
    "three_gib_file": ("weights.npz", lambda d: os.truncate(d / "weights.npz", 3 << 30),
                       "more than the"),
    "weights_is_directory": ("weights.npz", lambda d: ((d / "weights.npz").unlink(),
                                                       (d / "weights.npz").mkdir()), "missing"),
    "preprocess_directory": ("preprocess.json", lambda d: ((d / "preprocess.json").unlink(),
                             (d / "preprocess.json").mkdir()), "not a regular file"),
    "preprocess_symlink_loop": ("preprocess.json", lambda d: ((d / "preprocess.json").unlink(),
                                (d / "preprocess.json").symlink_to("preprocess.json")),
                                "symbolic links"),
    "preprocess_fifo": ("preprocess.json", lambda d: ((d / "preprocess.json").unlink(),
                        os.mkfifo(d / "preprocess.json")), "not a regular file"),
}


@pytest.mark.parametrize("case", list(MODEL_FILE_CASES))
def test_hostile_model_files_are_refused_before_reading_data(model_dir, tmp_path, case):
    """Each refused with one ModelFileError naming the file, before a large allocation or read
    (a header claiming 75 x 10**9 floats, a 3 GiB file), and with nothing changed."""
    import tracemalloc

    from nn_core import load_model
    from nn_core.io import ModelFileError

    name, damage, needle = MODEL_FILE_CASES[case]
    d = _copy_model(model_dir, tmp_path)
    damage(d)
    before = snapshot(tmp_path) if case != "three_gib_file" else None
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as info:
            load_model(d, require_preprocessing=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(str(info.value), d / name, needle)
    assert peak < 64 << 20, peak  # nothing near the claimed sizes was allocated
    if before is not None:
        assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "export"])
def test_commands_refuse_a_model_json_with_wrong_types(model_dir, scores_csv, tmp_path, command):
    d = _copy_model(model_dir, tmp_path)
    _edit_meta(d, hidden=64)
    before = snapshot(tmp_path)
    if command == "predict":
        res = run_cli(REPO / "predict.py", "--model", d, "--input", scores_csv, "--output",
                      tmp_path / "out.csv")
    else:
        res = run_cli("-m", "nn_core.export", "--model", d, "--format", "c", "--output",
                      tmp_path / "c")
    assert_refused(res, 1, d / "model.json", "'hidden' must be a list")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------- export names and --out


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needles",
    [
        (["--name", "a\nb"], ["--name", "letters, digits"]),
        (["--name", ""], ["--name", "letters, digits"]),
        (["--name", "../evil"], ["--name", "'../evil'"]),
        (["--name", "class"], ["--name", "'class'"]),
        (["--name", "os"], ["--name", "'os'"]),
        (["--format", "zz"], ["--format", "'zz'", "--help"]),
    ],
    ids=["newline", "empty", "path", "keyword", "os", "format"],
)
def test_export_bad_name_or_format(model_dir, tmp_path, args, needles):
    out = tmp_path / "out"
    before = snapshot(model_dir)
    fmt = [] if "--format" in args else ["--format", "python"]
    res = run_cli("-m", "nn_core.export", "--model", model_dir, *fmt, "--output", out, *args)
    assert res.returncode in (1, 2)
    assert_one_line(res.stderr, *needles)
    assert not out.exists()
    assert snapshot(model_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize("where", ["under_a_file", "in_proc"])
def test_export_out_that_cannot_be_created(model_dir, tmp_path, where):
    blocker = tmp_path / "f"
    blocker.write_text("a file\n")
    out = blocker / "out" if where == "under_a_file" else Path("/proc/self/no/out")
    before = snapshot(tmp_path)
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "c", "--output", out)
    assert_refused(res, 1, "error:", "/f" if where == "under_a_file" else "/proc/self/no")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------- event logs


def _log(path, rows, header="user_id,item_id,category_id,behavior_type,timestamp"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    "fmt, header, rows, row, needle",
    [
        ("taobao", None, ["1,2,3,pv,1511544070", "1,2,3,pv,19958614474"], 2,
         "timestamp out of range"),
        ("taobao", None, ["1,2,3,pv,1511544070", "1,2,3,pv,-99999999999"], 2,
         "timestamp out of range"),
        ("taobao", None, ["1,2,3,pv,9999999999999999999", "1,2,3,pv,1511544070"], 1,
         "timestamp out of range"),
        ("canonical", "user_id,timestamp,event_type",
         ["1,1511544070,view", "2,19958614474,purchase"], 2, "timestamp out of range"),
        ("canonical", "user_id,timestamp,event_type",
         ["1,2017-11-25T10:00:00,view", "2,2602-11-28T10:00:00,purchase"], 2,
         "timestamp out of range"),
        ("taobao", None, ["1,2,3,pv,1511544070", "1,2,3,pv,15115e4"], 2,
         "unparsable timestamp"),
    ],
    ids=["year_2602", "year__1138", "twenty_digits", "canonical_secs", "canonical_iso",
         "exponent"],
)
def test_event_timestamps_outside_datetime64_are_invalid_not_wrapped(tmp_path, fmt, header,
                                                                      rows, row, needle):
    from features.events import EventLogError, read_events

    path = _log(tmp_path / "log.csv", rows, *([header] if header else []))
    before = snapshot(tmp_path)
    with pytest.raises(EventLogError) as info:
        read_events(path, fmt)
    assert_one_line(str(info.value), path, f"row {row} ", "column 'timestamp'", needle)
    assert snapshot(tmp_path) == before
    df = read_events(path, fmt, drop_invalid=True)  # dropped and counted, never wrapped
    assert df.attrs["report"]["n_invalid"] == 1
    assert (df["timestamp"] < pd.Timestamp("2262-01-01", tz="UTC")).all()


@pytest.mark.parametrize("kind, needle", [("missing", "no such event-log file"),
                                          ("duplicate_column", "['event_type'] appear more"),
                                          ("ragged_row", "Expected 3 fields in line 3"),
                                          ("directory", "is a directory"),
                                          ("empty", "empty"),
                                          ("gzip", "not UTF-8"),
                                          ("latin1", "not UTF-8"),
                                          ("fifo_dir_link", "is a directory")])
def test_unreadable_event_log_names_the_file(tmp_path, kind, needle):
    from features.events import EventFileError, read_events

    path = tmp_path / "log.csv"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "gzip":
        path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    elif kind == "latin1":
        path.write_bytes("user_id,timestamp,event_type\n1,2017-11-25,vi\xe9w\n".encode("latin-1"))
    elif kind == "fifo_dir_link":
        path.symlink_to(tmp_path)
    elif kind == "duplicate_column":
        path.write_text("user_id,timestamp,event_type,event_type\n1,2017-11-25,view,cart\n")
    elif kind == "ragged_row":
        path.write_text("user_id,timestamp,event_type\n1,2017-11-25,view\n2,2017-11-25,view,x\n")
    before = snapshot(tmp_path)
    with pytest.raises(EventFileError) as info:
        read_events(path, "canonical")
    assert_one_line(str(info.value), path, needle)
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def events_model_dir(tmp_path_factory):
    """An event-log model (random weights over the event features) written by save_model."""
    from features.events import feature_columns
    from features.tabular import Preprocessor
    from nn_core import MLP
    from nn_core.modeldir import save_model

    columns = feature_columns(False)
    frame = pd.DataFrame(np.random.default_rng(0).uniform(0, 3, (30, len(columns))),
                         columns=columns)
    pre = Preprocessor(columns, [], target="label", id_column="user_id",
                       source={"kind": "events", "format": "canonical", "horizon": "1d"})
    pre.fit(frame)
    return save_model(tmp_path_factory.mktemp("events") / "run",
                      MLP(pre.n_features, (3,), backend="numpy"), pre)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "predict"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_events_path_missing_or_directory(events_model_dir, tmp_path, command, kind):
    path = tmp_path / "log.csv"
    if kind == "directory":
        path.mkdir()
    before = snapshot(tmp_path)
    if command == "train":
        res = run_cli(REPO / "train.py", "--events", path, "--quiet", "--output", tmp_path / "run")
    else:
        res = run_cli(REPO / "predict.py", "--model", events_model_dir, "--events", path,
                      "--cutoff", "2017-11-26", "--output", tmp_path / "out.csv")
    assert res.returncode in (1, 2)
    assert_one_line(res.stderr, path)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_train_taobao_log_with_a_timestamp_in_2602(tmp_path):
    path = _log(tmp_path / "log.csv", ["1,2,3,pv,1511544070", "1,2,3,buy,19958614474"])
    before = snapshot(tmp_path)
    res = run_cli(REPO / "train.py", "--events", path, "--events-format", "taobao", "--quiet",
                  "--output", tmp_path / "run")
    assert_refused(res, 1, path, "row 2", "column 'timestamp'", "19958614474")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------- work in progress and run dirs


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_removes_only_what_dead_writers_left(tmp_path):
    from nn_core.io import remove_stale, temp_file

    fd, live = temp_file(tmp_path / "mine.csv")  # this process: alive and locked
    dead = _dead_pid()
    (tmp_path / f".scores.csv.{dead}-abc123.tmp").write_text("half")
    (tmp_path / f".run.{dead}-xyz.partial").mkdir()
    (tmp_path / f".run.{dead}-xyz.partial" / "model.json").write_text("{}")
    (tmp_path / "run").mkdir()  # the dead run's reservation: empty
    (tmp_path / f".latest.{dead}-link.tmp").symlink_to("nowhere")
    keep = [tmp_path / "notes.tmp", tmp_path / f".other.{os.getpid()}-q.partial",
            tmp_path / ".x.1-y.tmp"]  # not ours to judge: pid 1 is alive
    keep[0].write_text("user file")
    keep[1].mkdir()
    keep[2].write_text("init's")
    removed = remove_stale(tmp_path)
    os.close(fd)
    assert sorted(p.name for p in removed) == sorted(
        [f".scores.csv.{dead}-abc123.tmp", f".run.{dead}-xyz.partial",
         f".latest.{dead}-link.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, *(p.name for p in keep)])


def test_remove_stale_keeps_a_partial_whose_lock_is_held(tmp_path):
    """A dead pid in the name is not enough: another live process holds the lock (a pid from
    another namespace); the directory is kept."""
    from nn_core.io import remove_stale

    dead = _dead_pid()
    partial = tmp_path / f".run.{dead}-k.partial"
    partial.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
         "time.sleep(60)", str(partial)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert remove_stale(tmp_path) == []
        assert partial.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale(tmp_path) == [partial]


def test_two_run_directories_reserved_in_the_same_second_differ(tmp_path):
    from nn_core.io import new_run_dir

    a, b = new_run_dir(None, tmp_path), new_run_dir(None, tmp_path)
    assert a.out != b.out and a.out.is_dir() and b.out.is_dir()
    (a.tmp / "model.json").write_text("a")
    (b.tmp / "model.json").write_text("b")
    b.commit()
    a.commit()
    assert (a.out / "model.json").read_text() == "a"
    assert (b.out / "model.json").read_text() == "b"


def test_a_reserved_out_is_refused_to_a_second_run_and_kept(tmp_path):
    from nn_core.io import new_run_dir

    first = new_run_dir(tmp_path / "run")
    with pytest.raises(FileExistsError, match="another run is writing into it"):
        new_run_dir(tmp_path / "run")
    (first.tmp / "metrics.json").write_text("{}")
    first.commit()
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"
    with pytest.raises(FileExistsError, match="not an empty directory"):
        new_run_dir(tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_discarded_run_leaves_nothing_and_keeps_a_given_empty_out(tmp_path):
    from nn_core.io import new_run_dir

    (tmp_path / "given").mkdir()
    for out in (tmp_path / "given", tmp_path / "new", None):
        run = new_run_dir(out, tmp_path)
        (run.tmp / "weights.npz").write_bytes(b"x")
        run.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given"]
    assert list((tmp_path / "given").iterdir()) == []


def test_atomic_write_names_the_file_of_a_write_error(tmp_path):
    """A write failing without a file name (ENOSPC/EFBIG from write()) is reported with the
    destination's name, and nothing is left behind."""
    from nn_core.io import atomic_write, describe_os_error

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        with pytest.raises(OSError) as info:
            atomic_write(target, b"x" * 5000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert describe_os_error(info.value) == (f"{target}: File too large (the file-size limit, "
                                             "ulimit -f, was reached)")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


# --------------------------------------------------------------------------- faults


def _slow_table(path):
    """Enough rows that 10**6 epochs take far longer than the test waits."""
    rng = np.random.default_rng(0)
    n = 4000
    pd.DataFrame({"x": rng.normal(size=n).round(3), "c": rng.choice(["a", "b"], n),
                  "y": np.tile([0, 1], n // 2)}).to_csv(path, index=False)


def _start_long_training(tmp_path, out):
    _slow_table(tmp_path / "big.csv")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *map(str, train_argv(
            tmp_path / "big.csv", out, "--epochs", "1000000", "--patience", "1000000"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial") for p in out.parent.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)  # into the epochs
    return proc


@pytest.mark.slow
def test_sigterm_during_training_cleans_up_like_ctrl_c(tmp_path):
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path / "runs")
    proc = _start_long_training(tmp_path, tmp_path / "runs" / "run")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert_one_line(err, "train.py: terminated (SIGTERM); no run directory written")
    assert snapshot(tmp_path / "runs") == before  # no .partial, no reserved directory


@pytest.mark.slow
def test_kill_9_leftovers_are_removed_by_the_next_run(tmp_path):
    (tmp_path / "runs").mkdir()
    proc = _start_long_training(tmp_path, tmp_path / "runs" / "killed")
    proc.kill()
    proc.communicate(timeout=60)
    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(left) == 2 and left[0].startswith(".killed.") and left[1] == "killed", left
    _tiny_table(tmp_path / "t.csv", [])
    res = run_cli(REPO / "train.py", *train_argv(tmp_path / "t.csv", tmp_path / "runs" / "next"))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["next"]


@pytest.mark.slow
def test_two_runs_to_the_same_out_one_wins_the_other_refuses(tmp_path):
    _slow_table(tmp_path / "big.csv")
    out = tmp_path / "run"
    procs = [subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *map(str, train_argv(tmp_path / "big.csv", out,
                                                                      "--epochs", "3"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert_one_line(loser, "--output", out)
    assert (out / "model.json").is_file() and (out / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "run"]


@pytest.mark.slow
def test_two_default_runs_at_once_both_succeed_in_distinct_directories(tmp_path):
    _tiny_table(tmp_path / "t.csv", [])
    argv = train_argv(tmp_path / "t.csv", "x")[:-2]  # no --out: runs/<timestamp>
    procs = [subprocess.Popen([sys.executable, str(REPO / "train.py"), *map(str, argv)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.communicate()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 3 and runs[-1] == "latest", runs
    for name in runs[:2]:
        assert (tmp_path / "runs" / name / "model.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "predict", "export"])
def test_full_disk_is_one_line_naming_the_file_and_nothing_is_left(model_dir, scores_csv,
                                                                    tmp_path, command):
    """Writes fail with EFBIG past a 4 KiB file-size limit (RLIMIT_FSIZE): the model's
    weights, a PNG plot, the scores, a C source are all larger."""
    work = tmp_path / "work"
    work.mkdir()
    if command == "train":
        _tiny_table(work / "t.csv", [])
        args = [REPO / "train.py", *train_argv(work / "t.csv", work / "run")]
    elif command == "predict":
        shutil.copy(scores_csv, work / "s.csv")
        big = pd.concat([pd.read_csv(work / "s.csv")] * 20)
        big.to_csv(work / "s.csv", index=False)
        args = [REPO / "predict.py", "--model", model_dir, "--input", work / "s.csv",
                "--output", work / "scores.csv"]
    else:
        args = ["-m", "nn_core.export", "--model", model_dir, "--format", "c", "--output",
                work / "c"]
    # Once without the limit (elsewhere), so that numba's compile cache is written already
    # and the limit hits the command's own files.
    warm = [str(a).replace(str(work), str(tmp_path / "warm")) for a in args]
    shutil.copytree(work, tmp_path / "warm")
    assert run_cli(*warm).returncode == 0
    before = snapshot(work)
    model_before = snapshot(model_dir)
    res = run_cli(*args, file_size_limit=4096)
    assert res.returncode == 1, res.stderr
    assert_one_line(res.stderr, "File too large", str(work))
    assert snapshot(work) == before
    assert snapshot(model_dir) == model_before


@pytest.mark.slow
def test_full_disk_on_a_cold_compile_cache_names_the_cache(tmp_path):
    """On a fresh install the first compile writes numba's cache; a full disk there is named
    as such (not as a file of the run), and no run directory is left."""
    _tiny_table(tmp_path / "t.csv", [])
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    res = subprocess.run([sys.executable, str(REPO / "train.py"),
                          *map(str, train_argv(tmp_path / "t.csv", tmp_path / "run"))],
                         capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300)
    assert res.returncode == 1
    assert_one_line(res.stderr, "numba's compile cache", str(cache), "File too large")
    assert not (tmp_path / "run").exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("numba-cache")} \
        == {k: v for k, v in before.items() if not k.startswith("numba-cache")}


@pytest.mark.slow
def test_predict_into_a_pipe_closed_early(model_dir, scores_csv):
    """``predict.py ... | head -1``: the reader goes away; no traceback, no file."""
    folder = scores_csv.parent
    before = snapshot(folder)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    big = pd.concat([pd.read_csv(scores_csv)] * 500)
    big.to_csv(scores_csv, index=False)
    before = snapshot(folder)
    proc = subprocess.Popen([sys.executable, str(REPO / "predict.py"), "--model", model_dir,
                             "--input", scores_csv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode in (0, 1, -signal.SIGPIPE)
    assert "Traceback" not in err
    assert snapshot(folder) == before


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a SIGTERM handler of its own (``/proc/PID/status``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt"))
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_predict_sigterm_leaves_no_output(model_dir, scores_csv, tmp_path):
    """SIGTERM while predict.py reads a large input: exit 143, one line, no output file."""
    big = pd.concat([pd.read_csv(scores_csv)] * 20000)
    big.to_csv(tmp_path / "big.csv", index=False)
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "predict.py"), "--model", model_dir,
                             "--input", tmp_path / "big.csv", "--output",
                             tmp_path / "out.csv", "--chunksize", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # signal once predict.py handles SIGTERM (its run has begun: Linux's SigCgt mask), not
    # after a fixed sleep, which on a fast machine could land after the run, at exit
    deadline = time.monotonic() + 60
    while not _catches_sigterm(proc.pid) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # into the reading
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("predict.py finished before the signal")  # a very fast machine
    assert proc.returncode == 143, err
    assert_one_line(err, "predict.py: terminated (SIGTERM)")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ limits


def test_documented_limits_are_the_enforced_constants():
    """docs/architecture.md states the limits; the numbers are the code's constants."""
    from features.events import MAX_PRICE
    from features.tabular import MAX_CATEGORIES, MAX_HEADER_BYTES
    from nn_core import modeldir, network

    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## Limits"):]
    for value in (network.MAX_WIDTH, network.MAX_INPUTS, network.MAX_HIDDEN_LAYERS,
                  network.MAX_PARAMETERS, MAX_CATEGORIES, modeldir.MAX_MODEL_JSON_BYTES,
                  modeldir.MAX_PREPROCESS_JSON_BYTES, int(MAX_PRICE), MAX_HEADER_BYTES):
        assert f"{value:,}" in section, value


# ----------------------------------------------------- more flags: times, predict, export


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--cutoff", "garbage"], ["--cutoff", "'garbage'", "not a time"]),
        (["--cutoff", "3000-01-01"], ["--cutoff", "outside 1677 to 2262"]),
        (["--cutoff", ""], ["--cutoff", "not a time"]),
        (["--horizon", "soon"], ["--horizon", "'soon'"]),
        (["--horizon", "0h"], ["--horizon", "positive"]),
    ],
)
def test_train_event_time_flags_name_the_flag(tmp_path, capsys, flags, needles):
    from propensity.train import main

    log = tmp_path / "log.csv"
    log.write_text("user_id,timestamp,event_type\n" + "".join(
        f"{u},2017-11-{25 + d}T1{u}:00:00,{'purchase' if (u + d) % 3 == 0 else 'view'}\n"
        for u in range(1, 8) for d in range(4)))
    before = snapshot(tmp_path)
    status, err = call_main(main, ["--events", log, "--quiet", "--output", tmp_path / "run",
                                   *flags], capsys)
    assert status == 1, err
    assert_one_line(err, "train.py: error:", *needles)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flags, needles", [
    (["--top", "abc"], ["--top", "'abc'", "--help"]),
    (["--chunksize", "1e3"], ["--chunksize", "'1e3'"]),
    (["--bogus"], ["--bogus"]),
])
def test_predict_argument_errors_are_one_line(model_dir, scores_csv, capsys, flags, needles):
    from propensity.predict import main

    before = snapshot(scores_csv.parent)
    status, err = call_main(main, ["--model", model_dir, "--input", scores_csv, *flags], capsys)
    assert status == 2
    assert_one_line(err, "predict.py: error:", *needles)
    assert snapshot(scores_csv.parent) == before


@pytest.mark.slow
def test_predict_output_in_an_unwritable_place_names_the_output(model_dir, scores_csv):
    """/proc/self/x cannot be created (as root too): the message names --output, not the
    temporary file beside it."""
    before = snapshot(scores_csv.parent)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", "/proc/self/no-such-dir/scores.csv")
    assert res.returncode in (1, 2)
    assert_one_line(res.stderr, "/proc/self/no-such-dir")
    assert ".tmp" not in res.stderr
    assert snapshot(scores_csv.parent) == before


@pytest.mark.slow
@pytest.mark.parametrize("kind, needle", [("missing", "file not found"),
                                          ("directory", "is a directory"),
                                          ("empty", "cannot read it as CSV"),
                                          ("gzip", "not UTF-8")])
def test_export_eval_csv_that_cannot_be_read(model_dir, tmp_path, kind, needle):
    path = tmp_path / "eval.csv"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "gzip":
        path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(200)))
    before = snapshot(tmp_path)
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "c", "--output",
                  tmp_path / "c",
                  "--eval-csv", path)
    assert_refused(res, 1, path, needle)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "export"])
def test_closed_stdout_after_the_work_is_written(model_dir, tmp_path, command):
    """``train.py ... | true``: the run (or export) is written; the closed pipe is not an
    error and prints no traceback."""
    if command == "train":
        _tiny_table(tmp_path / "t.csv", [])
        args = [REPO / "train.py", *train_argv(tmp_path / "t.csv", tmp_path / "out")]
    else:
        args = ["-m", "nn_core.export", "--model", model_dir, "--format", "c", "--output",
                tmp_path / "out"]
    proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()  # the reader is gone before anything is printed
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err
    assert (tmp_path / "out" / ("model.json" if command == "train" else "model.c")).is_file()


@pytest.mark.slow
def test_out_of_memory_is_one_line_and_nothing_is_written(tmp_path):
    """A network within the limits but beyond the memory the process may use (RLIMIT_AS of
    3 GB; its parameters alone need 2 GiB twice): one line, exit 1, no run directory."""
    _tiny_table(tmp_path / "t.csv", [])
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9))

    res = subprocess.run([sys.executable, str(REPO / "train.py"),
                          *map(str, train_argv(tmp_path / "t.csv", tmp_path / "run",
                                               "--hidden", "65536,8192"))],
                         capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300)
    assert_refused(res, 1, "out of memory", "no run directory written")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("ranges, needle", [({"x": ["NaN", 1]}, "not NaN"),
                                            ({"x": [2, 1]}, "low 2 is above high 1"),
                                            ({"x": [True, 1]}, "numbers or null")])
def test_config_ranges_that_mean_nothing_are_refused(table, capsys, ranges, needle):
    from propensity.train import main

    folder = table.parent
    config = folder / "config.json"
    text = json.dumps({"target": "y", "numeric": ["x"], "categorical": ["c"],
                       "ranges": ranges}).replace('"NaN"', "NaN")
    config.write_text(text)
    before = snapshot(folder)
    status, err = call_main(main, ["--input", table, "--config", config, "--quiet", "--output",
                                   folder / "run"], capsys)
    assert status == 1
    assert_one_line(err, config, "ranges['x']", needle)
    assert snapshot(folder) == before


@pytest.mark.slow
def test_export_out_that_is_a_file(model_dir, tmp_path):
    out = tmp_path / "out.c"
    out.write_text("int keep;\n")
    before = snapshot(tmp_path)
    res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "c", "--output", out)
    assert_refused(res, 2, "--output", out, "not a directory")
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "export"])
def test_leftovers_of_a_killed_writer_are_removed_by_the_next(model_dir, scores_csv, tmp_path,
                                                              command):
    """What a ``kill -9`` of predict.py (its output's temporary file) or of the exporter (its
    staging folder) leaves is removed by the next run writing there; a live writer's is kept."""
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    if command == "predict":
        stale = out / f".scores.csv.{dead}-a1b2c3d4.tmp"
        stale.write_text("row,propensity\n1,0.")
        live = out / f".scores.csv.{os.getpid()}-e5f6.tmp"  # this test process: alive
        live.write_text("in progress")
        res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                      "--output", out / "scores.csv")
        made = "scores.csv"
    else:
        stale = out / f".export.{dead}-a1b2c3d4.partial"
        stale.mkdir()
        (stale / "model.c").write_text("/* half */")
        live = out / f".export.{os.getpid()}-e5f6.partial"
        live.mkdir()
        res = run_cli("-m", "nn_core.export", "--model", model_dir, "--format", "python",
                      "--output", out)
        made = "model_np.py"
    assert res.returncode == 0, res.stderr
    assert not stale.exists()
    assert live.exists()
    assert (out / made).is_file()


@pytest.mark.parametrize("price", ["inf", "-inf", "nan", "1e13", "-0.5", "1e999"])
def test_event_prices_that_would_make_features_infinite_are_invalid(tmp_path, price):
    """An infinite or huge price used to reach the feature builder's internal check (an
    AssertionError); it is an invalid value naming row and column."""
    from features.events import EventLogError, read_events

    path = tmp_path / "log.csv"
    path.write_text("user_id,timestamp,event_type,price\n1,2017-11-25T10:00:00,view,5\n"
                    f"2,2017-11-25T11:00:00,view,{price}\n")
    before = snapshot(tmp_path)
    with pytest.raises(EventLogError) as info:
        read_events(path)
    assert_one_line(str(info.value), path, "row 2 ", "column 'price'", "[0, 1e+12]")
    assert snapshot(tmp_path) == before


def _edit_columns(index, **changes):
    def edit(doc):
        doc["columns"][index].update(changes)
    return edit


PREPROCESS_CASES = {
    "categories_twice": (lambda doc: doc["columns"][-1].update(
        categories=["a", "a"]), "lists a category twice"),
    "categories_text": (lambda doc: doc["columns"][-1].update(categories="ab"),
                        "'categories' must be strings"),
    "std_bool": (_edit_columns(0, std=True), "std > 0"),
    "mean_text": (_edit_columns(0, mean="1"), "std > 0"),
    "kind_unknown": (_edit_columns(0, kind="ordinal"), "kind must be"),
    "column_twice": (lambda doc: doc["columns"][1].update(name=doc["columns"][0]["name"]),
                     "is listed twice"),
    "columns_object": (lambda doc: doc.update(columns={}), "'columns' must be a non-empty list"),
    "target_number": (lambda doc: doc.update(target=5), "'target' must be a column name"),
    "id_column_list": (lambda doc: doc.update(id_column=["id"]), "'id_column' must be"),
    "source_list": (lambda doc: doc.update(source=[1]), "'source' must be an object"),
    "version_true": (lambda doc: doc.update(format_version=True), "format_version"),
}


@pytest.mark.parametrize("case", list(PREPROCESS_CASES))
def test_preprocess_json_with_wrong_types_names_the_file(model_dir, tmp_path, case):
    from nn_core import load_model
    from nn_core.io import ModelFileError

    edit, needle = PREPROCESS_CASES[case]
    d = _copy_model(model_dir, tmp_path)
    doc = json.loads((d / "preprocess.json").read_text())
    edit(doc)
    (d / "preprocess.json").write_text(json.dumps(doc))
    before = snapshot(tmp_path)
    with pytest.raises(ModelFileError) as info:
        load_model(d, require_preprocessing=True)
    assert_one_line(str(info.value), d / "preprocess.json", needle)
    assert snapshot(tmp_path) == before


def test_model_json_format_version_true_is_not_version_1(model_dir, tmp_path):
    from nn_core import load_model
    from nn_core.io import ModelFileError

    d = _copy_model(model_dir, tmp_path)
    _edit_meta(d, format_version=True)
    with pytest.raises(ModelFileError, match=r"model.json: format_version True"):
        load_model(d)


@pytest.mark.parametrize("content, needle", [
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"target": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"target": "\xff"}', "not UTF-8"),
    (b"", "not valid JSON"),
], ids=["deep", "5000_digits", "latin1", "empty"])
def test_config_file_that_is_not_json_names_it(table, capsys, content, needle):
    from propensity.train import main

    folder = table.parent
    config = folder / "config.json"
    config.write_bytes(content)
    before = snapshot(folder)
    status, err = call_main(main, ["--input", table, "--config", config, "--quiet", "--output",
                                   folder / "run"], capsys)
    assert status == 1
    assert_one_line(err, config, needle)
    assert snapshot(folder) == before


def test_default_run_directory_when_runs_is_a_file(table, capsys, monkeypatch):
    from propensity.train import main

    folder = table.parent
    (folder / "runs").write_text("not a folder\n")
    monkeypatch.chdir(folder)
    before = snapshot(folder)
    argv = train_argv(table, "x")[:-2]  # no --out
    status, err = call_main(main, argv, capsys)
    assert status == 2
    assert_one_line(err, "run directory runs/<timestamp>", "runs exists and is not a directory")
    assert snapshot(folder) == before


def test_save_model_refuses_non_finite_weights_before_writing(tmp_path):
    """A model that could not be loaded back is not written at all."""
    from nn_core import MLP
    from nn_core.modeldir import save_model

    m = MLP(3, (2,), backend="numpy")
    m.params[0][0][1, 1] = np.nan
    with pytest.raises(ValueError, match=r"weights\.npz: not written.*NaN or infinite"):
        save_model(tmp_path / "m", m)
    assert list(tmp_path.iterdir()) == []


def test_run_directory_and_file_names_near_the_name_limit(tmp_path):
    """A 250-character name is legal; its temporary names (30 characters longer) must not
    make the write fail."""
    from nn_core.io import atomic_write, new_run_dir

    name = "r" * 250
    run = new_run_dir(tmp_path / name)
    atomic_write(run.tmp / name, "x")
    run.commit()
    assert (tmp_path / name / name).read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def _boom(*args, **kwargs):
    raise TypeError("boom\nsecond line")


@pytest.mark.parametrize("command", ["train", "predict", "export"])
def test_an_unexpected_exception_is_one_line_or_a_traceback_on_request(
        command, tmp_path, monkeypatch, capsys):
    """A bug of ours (an exception no handler expects) ends the command with one line naming
    the exception, exit status 1, nothing written; PROPENSITY_DEBUG=1 raises it instead."""
    import nn_core.export.cli as export_cli
    import propensity.predict
    import propensity.train

    main, argv = {
        "train": (propensity.train.main, ["--output", str(tmp_path / "run"), "--epochs", "1"]),
        "predict": (propensity.predict.main, ["--model", str(tmp_path), "--input", str(UCI),
                                              "--output", str(tmp_path / "s.csv")]),
        "export": (export_cli.main, ["--model", str(tmp_path / "model"), "--format", "c",
                                     "--output", str(tmp_path / "exp")]),
    }[command]
    target = {"train": (propensity.train, "run"), "predict": (propensity.predict, "run"),
              "export": (export_cli, "load_model_dir")}[command]
    monkeypatch.setattr(*target, _boom)
    (tmp_path / "model").mkdir()
    monkeypatch.delenv("PROPENSITY_DEBUG", raising=False)
    before = snapshot(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (TypeError: boom second line)" in err and "PROPENSITY_DEBUG" in err
    assert snapshot(tmp_path) == before
    monkeypatch.setenv("PROPENSITY_DEBUG", "1")
    with pytest.raises(TypeError, match="boom"):
        main(argv)
