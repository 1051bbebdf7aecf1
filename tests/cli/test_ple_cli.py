"""train.py --numeric-encoding / --ple-bins: the model directory stores the encoding,
config.json records the flags, predict.py scores through it; inapplicable or impossible
values are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nn_core import load_model
from propensity import predict, train

UCI = "data/online_shoppers_intention.csv"
TINY = ("--hidden", "4", "--epochs", "2", "--backend", "numpy", "--quiet")


def _call(main, argv, capsys):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.slow  # trains, then scores the bundled table
def test_ple_model_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    status, err = _call(train.main, ["--input", UCI, "--numeric-encoding", "standard+ple",
                                     "--ple-bins", "5", "--ple-binning", "tree", *TINY,
                                     "--output", run], capsys)
    assert status == 0, err
    doc = json.loads((run / "preprocess.json").read_text())
    assert doc["format_version"] == 3
    encoded = [c for c in doc["columns"] if "encoding" in c]
    assert len(encoded) == 10 and all(c["encoding"]["value"] for c in encoded)
    assert all(2 <= len(c["encoding"]["edges"]) <= 6 for c in encoded)
    saved = json.loads((run / "config.json").read_text())
    assert saved["numeric_encoding"] == "standard+ple" and saved["ple_bins"] == 5
    assert saved["ple_binning"] == "tree"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_features"] == load_model(run).preprocessing.n_features > 80
    out = tmp_path / "scores.csv"
    status, err = _call(predict.main, ["--model", run, "--input", UCI, "--output", out],
                        capsys)
    assert status == 0, err
    scores = pd.read_csv(out)["propensity"].to_numpy()
    expected = load_model(run).predict_proba(pd.read_csv(UCI))
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # builds a synthetic event log, trains, scores its users
def test_event_log_model_encodes_its_features(tmp_path, capsys):
    """--events: the model's numeric user features get the encoding (tree bins from the
    training snapshot's labels), the baseline keeps the standard one; predict.py --events
    scores through it."""
    from features.synthetic import generate_events, write_canonical_csv

    log = tmp_path / "events.csv"
    write_canonical_csv(generate_events(n_users=300, days=8, n_items=300, n_categories=15,
                                        seed=2), log)
    run = tmp_path / "run"
    status, err = _call(train.main, ["--events", log, "--numeric-encoding", "ple",
                                     "--ple-bins", "4", "--ple-binning", "tree", *TINY,
                                     "--output", run], capsys)
    assert status == 0, err
    pre = load_model(run).preprocessing
    assert pre.source["kind"] == "events" and pre.encodes
    assert all(len(c["encoding"]["edges"]) <= 5 for c in pre.columns if "encoding" in c)
    baseline = json.loads((run / "baseline" / "preprocess.json").read_text())
    assert baseline["format_version"] == 1  # the fixed baseline: standardised features
    out = tmp_path / "scores.csv"
    status, err = _call(predict.main, ["--model", run, "--events", log, "--output", out],
                        capsys)
    assert status == 0, err
    scores = pd.read_csv(out)["propensity"].to_numpy()
    assert len(scores) > 100 and np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize(("args", "message"), [
    (("--ple-bins", "8"), "--ple-bins applies to --numeric-encoding ple or standard+ple"),
    (("--ple-binning", "tree", "--ple-bins", "4"),
     "--ple-bins, --ple-binning apply to --numeric-encoding ple or standard+ple"),
    (("--numeric-encoding", "ple", "--ple-binning", "kmeans"), "invalid choice: 'kmeans'"),
    (("--numeric-encoding", "ple", "--ple-bins", "0"), "--ple-bins must be in [1, 256]"),
    (("--numeric-encoding", "spline"), "invalid choice: 'spline'"),
])
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    status, err = _call(train.main, [*args, *TINY, "--output", tmp_path / "run"], capsys)
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
