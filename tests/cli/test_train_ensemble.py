"""train.py --ensemble / --fuse / --calibrate end to end, and predict.py honouring them."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn_core import load_model

pytestmark = pytest.mark.slow  # each test runs train.py end to end

REPO = Path(__file__).resolve().parents[2]


def run(script, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)


def run_cli(*args):
    return run("train.py", *args)


def uci_sample(path: Path, every: int = 8) -> Path:
    """Header plus every ``every``-th row of the bundled table."""
    lines = (REPO / "data" / "online_shoppers_intention.csv").read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[1:][every - 1 :: every]]) + "\n")
    return path


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    """Two networks stacked with the logistic regression, isotonic calibration, 3 epochs."""
    tmp = tmp_path_factory.mktemp("ens")
    data = uci_sample(tmp / "sample.csv")
    out = tmp / "run"
    proc = run_cli("--input", data, "--epochs", "3", "--ensemble", "2", "--fuse", "stack",
                   "--calibrate", "isotonic", "--output", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return data, out, proc


def test_the_model_directory_holds_the_combination(stacked):
    _, out, _ = stacked
    meta = json.loads((out / "model.json").read_text())
    assert meta["format_version"] == 2 and meta["calibration"]["kind"] == "isotonic"
    assert [m["hidden"] for m in meta["members"]] == [[64], [64], []]
    assert [m["seed"] for m in meta["members"]] == [0, 2**32, 0]
    metrics = json.loads((out / "metrics.json").read_text())
    chosen = metrics["combination"]["chosen"][0]
    assert [m["weight"] for m in meta["members"]] == chosen["weights"]
    assert meta["logit_bias"] == chosen["bias"]
    for part in ("dev", "test"):  # the calibrated model is reported, with the ECE before
        assert 0 <= metrics["model"][part]["ece_uncalibrated"] <= 1
    assert metrics["model"]["dev"]["ece"] < metrics["model"]["dev"]["ece_uncalibrated"]
    with open(out / "history.csv") as fh:
        assert {r["model"] for r in csv.DictReader(fh)} == {"mlp", "mlp1", "baseline"}


def test_stdout_says_what_the_mlp_row_is(stacked):
    out = stacked[2].stdout
    assert "MLP row: 2 networks, logits averaged; stacked with the logistic regression" in out
    assert "ECE before -> after calibration: dev " in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_predict_scores_with_the_combination(stacked, tmp_path):
    data, out, _ = stacked
    proc = run("predict.py", "--model", out, "--input", data, "--output", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "p.csv") as fh:
        scored = {int(r["row"]): float(r["propensity"]) for r in csv.DictReader(fh)}
    with open(out / "test_predictions.csv") as fh:
        test = [(int(r["row"]), float(r["probability"])) for r in csv.DictReader(fh)]
    # test_predictions.csv numbers rows from 0, predict.py's row column from 1
    got = np.array([scored[row + 1] for row, _ in test])
    assert np.allclose(got, [p for _, p in test], atol=1e-6)
    # and the network alone would have scored differently
    model = load_model(out)
    assert len(model.members) == 3 and model.calibration is not None


def test_config_json_reproduces_the_combined_model(stacked, tmp_path):
    _, out, _ = stacked
    config = json.loads((out / "config.json").read_text())
    assert (config["ensemble"], config["fuse"], config["calibrate"]) == (2, "stack", "isotonic")
    again = tmp_path / "again"
    proc = run_cli("--config", out / "config.json", "--output", again, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (again / "weights.npz").read_bytes() == (out / "weights.npz").read_bytes()
    assert json.loads((again / "model.json").read_text()) == json.loads(
        (out / "model.json").read_text())


def test_platt_alone_keeps_one_network(tmp_path):
    data = uci_sample(tmp_path / "sample.csv", every=16)
    proc = run_cli("--input", data, "--epochs", "2", "--calibrate", "platt", "--pos-weight",
                   "auto", "--output", tmp_path / "run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert len(meta["members"]) == 1 and meta["calibration"]["kind"] == "platt"
    assert meta["members"][0]["weight"] == 1.0 and meta["logit_bias"] == 0.0


@pytest.mark.parametrize("args, message", [
    (("--fuse", "stack", "--calibrate", "platt"),
     "--calibrate platt after --fuse stack changes nothing"),
    (("--ensemble", "0"), r"--ensemble must be in \[1, 32\], got 0"),
])
def test_inapplicable_combinations_are_refused_in_one_line(tmp_path, args, message):
    proc = run_cli(*args, "--output", tmp_path / "run")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert re.search(message, proc.stderr)
    assert not (tmp_path / "run").exists()
