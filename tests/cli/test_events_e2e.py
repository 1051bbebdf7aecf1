"""End to end in event mode: train.py --events then predict.py --events, on a synthetic log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.events import features_at, read_events
from features.synthetic import generate_events, write_canonical_csv

ROOT = Path(__file__).resolve().parents[2]
# Several full train.py and predict.py runs on a synthetic log: left out of -m "not slow".
pytestmark = pytest.mark.slow


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("events_e2e")
    log = tmp / "events.csv"
    write_canonical_csv(generate_events(n_users=500, days=9, n_items=500, n_categories=20,
                                        seed=11), log)
    out = tmp / "run"
    r = _run("train.py", "--events", str(log), "--events-format", "canonical", "--horizon", "1d",
             "--hidden", "8", "--epochs", "15", "--lr", "0.01", "--quiet", "--output", str(out))
    assert r.returncode == 0, r.stderr
    return log, out


def test_train_writes_event_mode_outputs(trained):
    _, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["kind"] == "events"
    cut = metrics["data"]["splits"]["cutoffs"]
    assert cut["test"] == ["2017-12-03T00:00:00+00:00"] and cut["dev"] == [
        "2017-12-02T00:00:00+00:00"]
    for who in ("model", "baseline"):
        assert 0.5 < metrics[who]["test"]["roc_auc"] <= 1
        assert 0 < metrics[who]["test"]["pr_auc"] <= 1
    assert (out / "model.json").is_file() and (out / "baseline").is_dir()


def test_predict_scores_users_before_cutoff(trained, tmp_path):
    log, out = trained
    scores = tmp_path / "scores.csv"
    cutoff = "2017-12-02T00:00:00Z"
    r = _run("predict.py", "--model", str(out), "--events", str(log), "--cutoff", cutoff,
             "--output", str(scores))
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(scores)
    expected_users = features_at(read_events(log, "canonical"), cutoff).index
    assert sorted(got["user_id"]) == sorted(expected_users)
    assert got["propensity"].between(0, 1).all() and got["propensity"].nunique() > 10


def test_predict_event_mode_user_errors(trained, tmp_path):
    log, out = trained
    scores = tmp_path / "scores.csv"
    # No --cutoff: every user of the log, scored at its end (said on stderr).
    r = _run("predict.py", "--model", str(out), "--events", str(log), "--output", str(scores))
    assert r.returncode == 0 and "(the log's end)" in r.stderr, r.stderr
    assert len(pd.read_csv(scores)) == read_events(log, "canonical")["user_id"].nunique()
    scores.unlink()
    r = _run("predict.py", "--model", str(out), "--events", str(log), "--cutoff", "2000-01-01",
             "--output", str(scores))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "no user has events" in r.stderr
    assert not scores.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,timestamp,event_type\n1,2017-11-26T00:00:00Z,checkout\n")
    r = _run("predict.py", "--model", str(out), "--events", str(bad), "--cutoff", "2017-12-01",
             "--output", str(scores))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "row 1" in r.stderr and "event_type" in r.stderr and "checkout" in r.stderr
    assert not scores.exists()


def test_network_beats_the_baseline_where_the_log_has_signal(tmp_path):
    """train.py --events with its defaults, on a synthetic log whose purchases follow a latent
    intent (features.synthetic): the network, on every feature family, must rank test users
    better than the baseline on recency and open carts, by ROC-AUC and clearly by PR-AUC."""
    log = tmp_path / "events.csv"
    write_canonical_csv(generate_events(n_users=2000, days=9, seed=1), log)
    out = tmp_path / "run"
    r = _run("train.py", "--events", str(log), "--events-format", "canonical", "--horizon", "1d",
             "--quiet", "--output", str(out))
    assert r.returncode == 0, r.stderr
    test = {who: json.loads((out / "metrics.json").read_text())[who]["test"]
            for who in ("model", "baseline")}
    assert test["model"]["roc_auc"] > test["baseline"]["roc_auc"] + 0.01, test
    assert test["model"]["pr_auc"] > test["baseline"]["pr_auc"] + 0.03, test
