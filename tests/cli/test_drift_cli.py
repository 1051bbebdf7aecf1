"""predict.py's drift check, in-process: the bundled table scores without a warning,
PageValues x 10 + 5 or Month all "Nov" warn naming the column; the report beside the output,
its chart, chunking, the options, old model directories and event logs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A UCI model (random weights) with the drift reference of seed 0's training split,
    as train.py writes it (features/training_run.py: drift_reference)."""
    from features.datasets import TableData
    from features.tabular import Schema
    from features.training_run import drift_reference
    from nn_core import MLP, save_model

    split = TableData(UCI, Schema.uci()).split(0)
    net = MLP(split.X["train"].shape[1], hidden=(8,), seed=0, backend="numpy")
    return save_model(tmp_path_factory.mktemp("model") / "run", net, split.pre,
                      reference=drift_reference(net, split.pre, split, split.X))


@pytest.fixture(scope="module")
def uci():
    return pd.read_csv(UCI, dtype=str, keep_default_na=False)


def predict(capsys, *args) -> tuple[int, str]:
    from propensity.predict import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def drift_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "drift" in line]


@pytest.mark.slow  # three passes over the whole table (about 1 s each)
def test_bundled_table_no_warning_shifted_columns_named(model_dir, uci, tmp_path, capsys):
    code, err = predict(capsys, "--model", model_dir, "--input", UCI,
                        "--output", tmp_path / "scores.csv")
    assert code == 0 and drift_lines(err) == []
    report = json.loads((tmp_path / "scores.drift.json").read_text())
    assert report["flagged"] == [] and not report["scores_flagged"]
    assert report["rows"] == len(uci) and max(c["psi"] for c in report["columns"].values()) < 0.01
    pv = uci.assign(PageValues=pd.to_numeric(uci["PageValues"]) * 10 + 5)
    nov = uci.assign(Month="Nov")
    for name, frame in (("PageValues", pv), ("Month", nov)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        code, err = predict(capsys, "--model", model_dir, "--input", tmp_path / f"{name}.csv",
                            "--output", tmp_path / f"{name}_scores.csv")
        report = json.loads((tmp_path / f"{name}_scores.drift.json").read_text())
        assert code == 0 and report["flagged"][0] == name
        assert [c for c, v in report["columns"].items() if v["psi"] > 0.2] == [name]
        line, = drift_lines(err)
        assert f"input drift (PSI above 0.2): {name} " in line
        assert line.endswith(f"(bins in {tmp_path / f'{name}_scores.drift.json'})")


@pytest.fixture()
def sample(uci, tmp_path):
    """Every 10th row of the bundled table, PageValues shifted in the second half."""
    frame = uci.iloc[::10].copy()
    half = len(frame) // 2
    frame.iloc[half:, frame.columns.get_loc("PageValues")] = (
        pd.to_numeric(frame["PageValues"].iloc[half:]) * 10 + 5).astype(str)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return path


def test_chunked_equals_whole_and_the_threshold_is_configurable(model_dir, sample, tmp_path,
                                                                capsys):
    predict(capsys, "--model", model_dir, "--input", sample, "--output", tmp_path / "a.csv")
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                        tmp_path / "b.csv", "--chunksize", 97, "--drift-threshold", 100)
    assert code == 0
    a = json.loads((tmp_path / "a.drift.json").read_text())
    b = json.loads((tmp_path / "b.drift.json").read_text())
    assert a["flagged"][0] == "PageValues" and b["flagged"] == [] and drift_lines(err) == []
    assert b["threshold"] == 100
    del a["threshold"], a["flagged"], a["scores_flagged"]
    del b["threshold"], b["flagged"], b["scores_flagged"]
    assert a == b


def test_report_places_chart_and_no_drift(model_dir, sample, tmp_path, capsys):
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                        tmp_path / "s.csv", "--drift-output", tmp_path, "--drift-plot")
    assert code == 0
    assert (tmp_path / "drift.json").is_file() and not (tmp_path / "s.drift.json").exists()
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                        tmp_path / "t.csv", "--no-drift")
    assert code == 0 and drift_lines(err) == [] and not (tmp_path / "t.drift.json").exists()
    code, err = predict(capsys, "--model", model_dir, "--input", sample)  # to stdout
    assert code == 0 and "input drift (PSI above 0.2): PageValues" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drift.json", "drift.png", "in.csv", "s.csv", "t.csv"]


@pytest.mark.parametrize("args, message", [
    (["--no-drift", "--drift-plot"], "--no-drift: --drift-output and --drift-plot need"),
    (["--drift-plot"], "--drift-plot draws beside the drift report: give --drift-output"),
    (["--drift-threshold", "nan"], "--drift-threshold must be a finite number >= 0"),
])
def test_drift_usage_mistakes(model_dir, sample, capsys, args, message):
    code, err = predict(capsys, "--model", model_dir, "--input", sample, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_refuses_to_overwrite_the_input_or_the_output(model_dir, sample, tmp_path, capsys):
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                        tmp_path / "o.csv", "--drift-output", sample)
    assert code == 2 and "is the input file" in err
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                        tmp_path / "o.csv", "--drift-output", tmp_path / "o.csv")
    assert code == 2 and "is the --output or --rejected file" in err
    assert not (tmp_path / "o.csv").exists()


def test_old_model_directory_says_no_drift_check(model_dir, sample, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    (old / "drift_reference.json").unlink()
    code, err = predict(capsys, "--model", old, "--input", sample, "--output",
                        tmp_path / "o.csv")
    assert code == 0 and drift_lines(err) == [
        f"predict.py: no drift check: {old} has no drift_reference.json (saved before "
        "train.py stored the training distributions)"]
    assert not (tmp_path / "o.drift.json").exists()
    code, err = predict(capsys, "--model", old, "--input", sample, "--drift-output",
                        tmp_path / "d.json")
    assert code == 2 and "has no drift_reference.json" in err


def events_model(tmp_path: Path, n_users: int):
    """A synthetic event log of ``n_users`` users over 4 days, the users' features at its
    end, and a small untrained event-log model saved with their drift reference:
    (log path, features frame, model directory)."""
    from features.events import features_at, read_events
    from features.synthetic import generate_events, write_canonical_csv
    from features.tabular import Preprocessor
    from nn_core import MLP, save_model
    from nn_core.drift import fit_reference

    log_path = tmp_path / "log.csv"
    write_canonical_csv(generate_events(n_users=n_users, days=4, seed=0), log_path)
    log = read_events(log_path, format="canonical")
    frame = features_at(log, log.attrs["report"]["time_range"][1])
    pre = Preprocessor(list(frame.columns), [], target="label", id_column="user_id",
                       source={"kind": "events", "format": "canonical", "horizon": "1d"})
    pre.fit(frame.assign(label=0))
    net = MLP(pre.n_features, (3,), backend="numpy", seed=0)
    ref = fit_reference(pre.columns, pre.inputs(frame),
                        np.asarray(net.predict_proba(pre.transform(frame)), np.float64))
    return log_path, frame, save_model(tmp_path / "m", net, pre, reference=ref)


def test_dask_engine_says_in_one_line_that_it_has_no_drift_check(tmp_path, capsys,
                                                                 monkeypatch):
    """An event-log model with a drift reference scored by --engine dask: one line says
    the engine has no drift check (not that the model lacks a reference)."""
    pytest.importorskip("dask", reason="--engine dask needs the scale extra")
    from features import scoring

    log_path, _, model = events_model(tmp_path, n_users=60)
    pandas_engine = scoring.score_events  # the Dask cluster is not what is tested here
    monkeypatch.setattr(scoring, "score_events",
                        lambda *a, **k: pandas_engine(*a, **{**k, "engine": "pandas"}))
    code, err = predict(capsys, "--model", model, "--events", log_path, "--engine", "dask",
                        "--output", tmp_path / "o.csv")
    assert code == 0 and drift_lines(err) == [
        "predict.py: no drift check: --engine dask has none (the pandas engine's; "
        "--no-drift silences this line)"]
    assert not (tmp_path / "o.drift.json").exists()
    code, err = predict(capsys, "--model", model, "--events", log_path, "--engine", "dask",
                        "--output", tmp_path / "o.csv", "--no-drift")
    assert code == 0 and drift_lines(err) == []


def test_event_log_users_drift_on_the_event_features(tmp_path):
    """score_events hands the users' event features to the monitor: the log the reference
    was taken from shows no drift."""
    from features.scoring import score_events
    from nn_core import load_model
    from nn_core.drift import DriftMonitor

    log_path, frame, model_dir = events_model(tmp_path, n_users=150)
    model = load_model(model_dir, backend="numpy")
    monitor = DriftMonitor(model.reference)
    with score_events(log_path, model, observe=monitor.update) as scored:
        assert scored.n == monitor.n == len(frame)
    report = monitor.report()
    assert set(report["columns"]) == set(frame.columns)
    assert report["flagged"] == [] and report["scores"]["psi"] < 1e-9


@pytest.mark.slow  # a default train.py run on the bundled table (a few seconds)
def test_train_writes_importance_and_reference(tmp_path, capsys):
    """train.py: importance.csv ranks PageValues first for both models, importance.png is
    written, and both model directories load with their drift reference."""
    from nn_core import load_model
    from propensity.train import main

    assert main(["--quiet", "--output", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    table = pd.read_csv(run / "importance.csv")
    assert list(table.columns) == ["model", "column", "mean_drop", "std_drop", "rank"]
    for model in ("mlp", "baseline"):
        rows = table[table["model"] == model]
        assert len(rows) == 17 and list(rows["rank"]) == list(range(1, 18))
        assert rows.iloc[0]["column"] == "PageValues" and rows.iloc[0]["mean_drop"] > 0.1
    assert (run / "importance.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"importance.csv", "importance.png"} <= set(metrics["files"])
    for d in (run, run / "baseline"):
        ref = load_model(d).reference
        assert ref is not None and ref.n_rows == metrics["data"]["split_sizes"]["train"]
