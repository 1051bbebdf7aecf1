"""Issue 13: no data loss and no silently wrong result from predict.py, train.py, the exporter
and the MLP constructor. Each case: the exit status, one line on stderr naming the file or
argument, no traceback, and no file created or changed (directory listings and hashes)."""

import hashlib
import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
# Runs train.py, predict.py and the exporter as commands: left out of -m "not slow".
pytestmark = pytest.mark.slow
UCI = REPO / "data" / "online_shoppers_intention.csv"
FORMATS = ("c", "c-int8", "python", "python-pure")


def run_cli(*args, cwd=REPO, timeout=120):
    """``python ARGS...`` (a script path or ``-m module``) with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


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
    """A small UCI model (every 20th row, untrained weights) written by save_model."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, load_table
    from nn_core import MLP
    from nn_core.modeldir import save_model

    tmp = tmp_path_factory.mktemp("model")
    lines = UCI.read_text().splitlines()
    (tmp / "train.csv").write_text("\n".join([lines[0], *lines[1:][::20]]) + "\n")
    frame = load_table(tmp / "train.csv", Schema.uci())
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(frame)
    n = pre.transform(frame.iloc[:2]).shape[1]
    return save_model(tmp / "run", MLP(n, (4,), backend="numpy"), pre)


@pytest.fixture()
def scores_csv(tmp_path):
    """20 UCI rows to score, in a folder of their own."""
    lines = UCI.read_text().splitlines()
    path = tmp_path / "s.csv"
    path.write_text("\n".join([lines[0], *lines[1:][5::600][:20]]) + "\n")
    return path


# ------------------------------------------------------------------- predict.py --output


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


def test_predict_output_is_events_input_refused(model_dir, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,category_id,behavior,timestamp\n1,2,3,pv,1511544070\n")
    before = snapshot(tmp_path)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--events", log, "--cutoff",
                  "2017-11-26", "--output", log)
    assert_refused(res, 2, "--output", log, "is the input file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["model.json", "weights.npz", "preprocess.json"])
def test_predict_output_is_model_file_refused(model_dir, scores_csv, name):
    before = snapshot(model_dir)
    res = run_cli(REPO / "predict.py", "--model", model_dir, "--input", scores_csv,
                  "--output", model_dir / name)
    assert_refused(res, 2, "--output", name)
    assert snapshot(model_dir) == before


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
    res = run_cli("-m", "nn_core.export", model_dir, "--format", fmt, "--out", out, *args)
    assert_refused(res, 2, "--out", out, "model directory")
    assert snapshot(model_dir) == before


@pytest.mark.parametrize("name", ["numpy", "pandas", "json", "math", "sys", "nn_core",
                                  "features", "stdio", "stdint"])
def test_export_name_that_shadows_a_module_refused(model_dir, tmp_path, name):
    out = tmp_path / "out"
    res = run_cli("-m", "nn_core.export", model_dir, "--format", "python", "--out", out,
                  "--name", name)
    assert_refused(res, 1, "--name", repr(name))
    assert not out.exists()


def test_export_refuses_to_replace_eval_csv(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    eval_csv = out / "model_np.json"
    lines = UCI.read_text().splitlines()
    eval_csv.write_text("\n".join(lines[:30]) + "\n")
    before = snapshot(tmp_path)
    res = run_cli("-m", "nn_core.export", model_dir, "--format", "python", "--out", out,
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
    res = run_cli(REPO / "train.py", "--data", data, "--target", "y", "--numeric", "x",
                  "--categorical", "c", "--epochs", "1", "--quiet", "--out", tmp_path / "run")
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
