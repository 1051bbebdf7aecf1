"""train.py end to end on small subsets: run directory, metrics.json shape, plots, errors.

The libraries under it (training with early stopping, tuning, the data adapters) are tested
through their own API in ``tests/test_training.py``.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"
METRIC_KEYS = {"roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1",
               "threshold", "lift_at_10", "ece"}
PLOTS = ("loss_curves.png", "roc.png", "pr.png", "reliability.png", "gains.png")


def run_cli(*args, cwd=REPO, timeout=120):
    """Run train.py in a subprocess; return the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def uci_sample(path: Path, every: int = 8, edit=None) -> Path:
    """Header plus every ``every``-th UCI row (1,541 rows for 8, ~15 % buyers)."""
    lines = UCI.read_text().splitlines()
    rows = [lines[0], *lines[1:][every - 1 :: every]]
    if edit is not None:
        rows = edit(rows)
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = uci_sample(tmp / "sample.csv")
    out = tmp / "run"
    proc = run_cli("--data", data, "--seeds", "0,1", "--epochs", "4", "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "test metrics, mean ± std over seeds 0,1" in proc.stdout
    return out


def test_run_directory_holds_model_state_history_and_plots(run_dir):
    for name in ("model.json", "weights.npz", "preprocess.json", "metrics.json", "history.csv",
                 "baseline/model.json", "baseline/weights.npz", "baseline/preprocess.json",
                 *PLOTS):
        assert (run_dir / name).is_file(), name
    pre = json.loads((run_dir / "preprocess.json").read_text())
    assert pre["target"] == "Revenue" and pre["source"] == {"kind": "table"}
    model = json.loads((run_dir / "model.json").read_text())
    baseline = json.loads((run_dir / "baseline/model.json").read_text())
    assert model["hidden"] == [64] and baseline["hidden"] == []
    assert model["n_inputs"] == baseline["n_inputs"]
    with open(run_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"seed", "model", "epoch", "train_objective", "train_loss",
                            "dev_loss", "dev_roc_auc"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for seed in ("0", "1"):
        for name in ("mlp", "baseline"):
            mine = [r for r in rows if r["seed"] == seed and r["model"] == name]
            epochs = [int(r["epoch"]) for r in mine]
            assert epochs == list(range(1, len(epochs) + 1)) and 1 <= len(epochs) <= 4
            # the reported best epoch is the best dev ROC-AUC of the written history
            key = "best_epoch" if name == "mlp" else "baseline_best_epoch"
            aucs = [float(r["dev_roc_auc"]) for r in mine]
            assert metrics["runs"][int(seed)][key] == int(np.argmax(aucs)) + 1


def test_metrics_json_has_the_documented_shape(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for section in (m, m["mean"], m["std"]):
        for name in ("model", "baseline"):
            for part in ("dev", "test"):
                assert METRIC_KEYS <= set(section[name][part])
    assert [r["seed"] for r in m["runs"]] == [0, 1]
    assert m["model"] == m["runs"][0]["model"]  # top level = the saved (first) seed
    aucs = [r["model"]["test"]["roc_auc"] for r in m["runs"]]
    assert m["mean"]["model"]["test"]["roc_auc"] == pytest.approx(np.mean(aucs))
    assert m["std"]["model"]["test"]["roc_auc"] == pytest.approx(np.std(aucs, ddof=1))
    # the threshold is tuned on dev and reused on test
    assert m["model"]["test"]["threshold"] == m["model"]["dev"]["threshold"]
    assert m["data"]["split_sizes"] == {"train": 1079, "dev": 231, "test": 231}
    assert 0.5 < m["model"]["test"]["roc_auc"] <= 1.0


def test_plots_are_non_empty_pngs(run_dir):
    for name in PLOTS:
        blob = (run_dir / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5_000, name


def test_default_out_is_timestamped_and_latest_points_at_it(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--data", data, "--epochs", "2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
    latest = tmp_path / "runs" / "latest"
    if latest.is_symlink():
        assert latest.resolve() == runs[0].resolve()
    else:
        assert latest.read_text().strip() == runs[0].name


def test_tune_saves_the_trials_table(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--data", data, "--epochs", "2", "--tune", "3", "--quiet", "--out",
                   tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "run" / "tune_trials.csv") as fh:
        trials = list(csv.DictReader(fh))
    assert [t["trial"] for t in trials] == ["0", "1", "2"]
    assert sum(t["selected"] == "True" for t in trials) == 1
    best = max(trials, key=lambda t: float(t["dev_roc_auc"]))
    assert best["selected"] == "True"  # chosen on dev ROC-AUC
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["tune"]["selected"]["trial"] == int(best["trial"])
    hidden = best["hidden"]
    expected_hidden = [] if hidden == "none" else [int(h) for h in hidden.split(",")]
    assert m["config"]["hidden"] == expected_hidden


def synthetic_table(path: Path, n: int = 400) -> Path:
    """A non-UCI session table: id, two quantities, a channel code and a yes/no target."""
    rng = np.random.default_rng(1)
    visits = rng.poisson(3, n)
    channel = rng.choice(["ads", "mail", "direct"], n)
    spend = rng.gamma(2.0, 20.0, n).round(2)
    logit = 0.6 * visits - 2.5 + (channel == "mail") * 1.0
    bought = rng.random(n) < 1 / (1 + np.exp(-logit))
    lines = ["sid,visits,spend,channel,bought"]
    lines += [f"s{i},{v},{s},{c},{int(b)}"
              for i, (v, s, c, b) in enumerate(zip(visits, spend, channel, bought, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("how", ["flags", "config"])
def test_any_session_table_with_column_roles(tmp_path, how):
    data = synthetic_table(tmp_path / "shop.csv")
    if how == "flags":
        roles = ["--target", "bought", "--numeric", "visits,spend", "--categorical", "channel",
                 "--id-column", "sid"]
    else:
        cfg = tmp_path / "roles.json"
        cfg.write_text(json.dumps({"target": "bought", "numeric": ["visits", "spend"],
                                   "categorical": ["channel"], "id_column": "sid",
                                   "ranges": {"visits": [0, None]}}))
        roles = ["--config", cfg]
    proc = run_cli("--data", data, *roles, "--epochs", "3", "--quiet", "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    pre = json.loads((tmp_path / "r" / "preprocess.json").read_text())
    assert [c["name"] for c in pre["columns"]] == ["visits", "spend", "channel"]
    assert pre["columns"][2]["categories"] == ["ads", "direct", "mail"]
    assert pre["target"] == "bought" and pre["id_column"] == "sid"


def test_bad_data_gives_one_clean_message_and_no_output(tmp_path):
    def break_row(rows):
        cells = rows[5].split(",")
        cells[6] = "oops"  # BounceRates of data row 5
        rows[5] = ",".join(cells)
        return rows

    data = uci_sample(tmp_path / "bad.csv", edit=break_row)
    proc = run_cli("--data", data, "--quiet", "--out", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    for part in (str(data), "data row 5", "'BounceRates'", "not a number", "'oops'"):
        assert part in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_a_run_that_fails_midway_leaves_nothing_behind(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--data", data, "--lr", "1e30", "--epochs", "3", "--quiet", "--out",
                   tmp_path / "run")
    assert proc.returncode == 1 and "diverged" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.csv"]  # no run dir, no .partial leftovers


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--lr", "-1"], 2, "--lr must be > 0"),
        (["--hidden", "64,x"], 2, "expected comma-separated integers"),
        (["--pos-weight", "-2"], 2, "pos-weight must be > 0"),
        (["--target", "nope"], 1, "column 'nope': required column is missing"),
        (["--data", "missing.csv"], 1, "missing.csv: file not found"),
        (["--split", "0.98,0.01,0.01"], 2, "needs both classes"),
        (["--numeric", "Administrative", "--categorical", "Administrative"], 2,
         "more than one role"),
    ],
)
def test_usage_errors(tmp_path, args, code, message):
    data = uci_sample(tmp_path / "s.csv", every=32)
    proc = run_cli("--data", data, *args, "--quiet", "--out", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_out_must_be_new_or_empty(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    proc = run_cli("--data", uci_sample(tmp_path / "s.csv", every=32), "--out", tmp_path / "run")
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr
    assert os.listdir(tmp_path / "run") == ["keep.txt"]



@pytest.mark.parametrize("restore", [True, False])
def test_patience_and_restore_flags_reach_early_stopping(tmp_path, restore):
    data = uci_sample(tmp_path / "s.csv", every=6)
    flags = [] if restore else ["--no-restore-best"]
    proc = run_cli("--data", data, "--patience", "2", "--epochs", "60", "--quiet", *flags,
                   "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == "mlp"]
    aucs = [float(r["dev_roc_auc"]) for r in rows]
    best = int(np.argmax(aucs)) + 1
    if len(rows) < 60:  # stopped early: exactly `patience` epochs after the best one
        assert len(rows) == best + 2
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["config"]["patience"] == 2 and m["config"]["restore_best"] is restore
    # the saved model is the best dev epoch's (or, with --no-restore-best, the last one's)
    held = best if restore else len(rows)
    assert m["best_epoch"] == held
    assert m["model"]["dev"]["roc_auc"] == pytest.approx(aucs[held - 1], abs=1e-12)
