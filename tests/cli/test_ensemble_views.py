"""train.py --ensemble-views: a mixed-encoding ensemble as one model directory (members on
views of the features, zero first-layer rows elsewhere) that predict.py scores and
python -m nn_core.export exports; --preset mixed; the refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from export_helpers import build_harness, export_cli, import_file, run_harness

from nn_core import export as ex
from nn_core import load_model
from nn_core.preprocessing import NUMERIC_ENCODINGS
from propensity import config, predict, train

UCI = "data/online_shoppers_intention.csv"
VIEWS = ("--ensemble", "4", "--ensemble-views", "standard,standard+ple",
         "--numeric-encoding", "standard+ple", "--ple-bins", "4")


def _call(main, argv, capsys):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def uci_sample(path, every: int = 8):
    """Header plus every ``every``-th row of the bundled table."""
    lines = open(UCI).read().splitlines()
    path.write_text("\n".join([lines[0], *lines[1:][every - 1 :: every]]) + "\n")
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Four networks, members 0 and 2 on the standardised values (and the one-hot blocks),
    1 and 3 on those and the PLE bins; 3 epochs on an eighth of the table."""
    tmp = tmp_path_factory.mktemp("views")
    data = uci_sample(tmp / "sample.csv")
    out = tmp / "run"
    argv = ["--input", data, *VIEWS, "--epochs", "3", "--hidden", "8",
            "--importance-repeats", "0", "--quiet", "--output", out]
    status = train.main([str(a) for a in argv])
    assert status == 0
    return data, out


@pytest.mark.slow  # trains four networks, scores, exports
def test_members_have_zero_weights_outside_their_view(mixed):
    _, out = mixed
    model = load_model(out)
    names = model.preprocessing.feature_names
    bins = np.array(["[ple " in n for n in names])
    assert bins.sum() > 10
    weights = np.load(out / "weights.npz")
    W = [weights["W0"], *(weights[f"m{k}/W0"] for k in (1, 2, 3))]
    for k, W0 in enumerate(W):
        assert W0.shape == (len(names), 8)
        if k % 2 == 0:  # view "standard": no weight on a bin
            assert not W0[bins].any() and np.all(np.abs(W0[~bins]).sum(axis=1) > 0)
        else:
            assert np.all(np.abs(W0).sum(axis=1) > 0)
    metrics = json.loads((out / "metrics.json").read_text())
    combination = metrics["combination"]
    assert combination["views"] == ["standard", "standard+ple"]
    assert combination["view_features"] == [int((~bins).sum()), len(names)]
    saved = json.loads((out / "config.json").read_text())
    assert saved["ensemble_views"] == ["standard", "standard+ple"]


@pytest.mark.slow
def test_predict_scores_the_mixed_model_as_the_run_did(mixed, tmp_path, capsys):
    data, out = mixed
    scores = tmp_path / "p.csv"
    status, _, err = _call(predict.main, ["--model", out, "--input", data, "--output",
                                          scores], capsys)
    assert status == 0, err
    got = pd.read_csv(scores).set_index("row")["propensity"]
    test = pd.read_csv(out / "test_predictions.csv")
    # test_predictions.csv numbers rows from 0, predict.py's row column from 1
    np.testing.assert_allclose(got.loc[test["row"] + 1].to_numpy(), test["probability"],
                               rtol=0, atol=1e-6)


@pytest.mark.slow
def test_config_json_reproduces_the_mixed_model(mixed, tmp_path):
    _, out = mixed
    again = tmp_path / "again"
    assert train.main(["--config", str(out / "config.json"), "--quiet",
                       "--output", str(again)]) == 0
    assert (again / "weights.npz").read_bytes() == (out / "weights.npz").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["c", "python"])
def test_the_exports_score_the_mixed_model_as_predict(mixed, tmp_path, fmt):
    data, out = mixed
    if fmt == "c" and shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    proc = export_cli("--model", out, "--format", fmt, "--output", tmp_path, "--name", "mix")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(data)
    expected = load_model(out).predict_proba(df)
    model, _ = ex.load_model_dir(out)
    X = ex.encode_table(model, df)
    if fmt == "c":  # float32 arithmetic in C
        p = run_harness(build_harness(tmp_path, "mix"), X)
    else:
        p = import_file(tmp_path / "mix.py", "mix_views").predict_proba(X)
    assert np.max(np.abs(p - expected)) <= 1e-5


def resolved(argv: list[str]) -> dict:
    parser = train.build_parser()
    train.apply_preset(parser, argv)
    return vars(config.parse_args(parser, argv, {"ranges": train._ranges}))


def test_preset_mixed_sets_views_and_flags_win():
    args = resolved(["--preset", "mixed"])
    assert args["ensemble_views"] == ("standard+ple", "quantile+ple")
    assert (args["numeric_encoding"], args["ple_bins"], args["lr"], args["ensemble"]) == (
        "standard+quantile+ple", 4, 3e-3, 10)
    args = resolved(["--preset", "mixed", "--ensemble-views", "standard+ple"])
    assert args["ensemble_views"] == ("standard+ple",)


def test_views_in_a_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ensemble-views": ["standard", "ple"], "ensemble": 2}))
    assert resolved(["--config", str(path)])["ensemble_views"] == ("standard", "ple")
    path.write_text(json.dumps({"ensemble_views": "standard,ple"}))
    assert resolved(["--config", str(path)])["ensemble_views"] == ("standard", "ple")


@pytest.mark.parametrize(("args", "message"), [
    (("--ensemble", "2", "--ensemble-views", "standard,standard+ple"),
     "--ensemble-views: view standard+ple is not contained in the numeric encoding "
     "standard: it lacks the piecewise-linear bins"),
    (("--numeric-encoding", "standard+ple", "--ensemble", "1", "--ensemble-views",
      "standard,ple"), "--ensemble-views gives 2 views; --ensemble must be at least that"),
    (("--ensemble", "2", "--ensemble-views", "standard,bins"),
     "argument --ensemble-views: unknown view 'bins'"),
])
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    status, _, err = _call(train.main, [*args, "--epochs", "1", "--quiet", "--output",
                                        tmp_path / "run"], capsys)
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif("quantile+ple" not in NUMERIC_ENCODINGS,
                    reason="needs the Gaussian-rank encodings")
def test_a_mixed_preset_run_saves_one_model_of_ten_networks(tmp_path):
    out = tmp_path / "run"
    assert train.main(["--preset", "mixed", "--epochs", "1", "--hidden", "4", "--quiet",
                       "--importance-repeats", "0", "--output", str(out)]) == 0
    model = load_model(out)
    names = model.preprocessing.feature_names
    rank = np.array([n.endswith("[rank]") for n in names])
    value = np.array([not n.endswith("]") and "=" not in n for n in names])
    weights = np.load(out / "weights.npz")
    assert len(json.loads((out / "model.json").read_text())["members"]) == 10
    assert rank.any() and value.any()
    for k in range(10):
        W0 = weights["W0" if k == 0 else f"m{k}/W0"]
        off = rank if k % 2 == 0 else value  # standard+ple sees no rank, quantile+ple no z
        assert not W0[off].any()


@pytest.mark.slow
def test_tune_searches_on_the_first_views_columns(tmp_path, monkeypatch):
    from nn_core import selection

    widths, tune = [], selection.tune

    def recording(cfg, X, *args, **kwargs):
        widths.append(X["train"].shape[1])
        return tune(cfg, X, *args, **kwargs)

    monkeypatch.setattr(selection, "tune", recording)
    out = tmp_path / "run"
    assert train.main(["--input", str(uci_sample(tmp_path / "s.csv", every=16)), *VIEWS,
                       "--tune", "2", "--epochs", "1", "--importance-repeats", "0", "--quiet",
                       "--output", str(out)]) == 0
    view_features = json.loads((out / "metrics.json").read_text())["combination"][
        "view_features"]
    assert widths == [view_features[0]] and view_features[0] < view_features[1]


@pytest.mark.slow  # builds a synthetic event log, trains, scores its users
def test_an_event_log_model_mixes_views_too(tmp_path, capsys):
    from features.synthetic import generate_events, write_canonical_csv

    log = tmp_path / "events.csv"
    write_canonical_csv(generate_events(n_users=300, days=8, n_items=300, n_categories=15,
                                        seed=2), log)
    run = tmp_path / "run"
    status, _, err = _call(train.main, ["--events", log, "--numeric-encoding", "standard+ple",
                                        "--ple-bins", "4", "--ensemble", "2",
                                        "--ensemble-views", "ple,standard", "--epochs", "2",
                                        "--hidden", "4", "--quiet", "--importance-repeats",
                                        "0", "--output", run], capsys)
    assert status == 0, err
    names = load_model(run).preprocessing.feature_names
    bins = np.array(["[ple " in n for n in names])
    weights = np.load(run / "weights.npz")
    assert not weights["m1/W0"][bins].any() and weights["W0"][bins].any()  # view standard
    status, _, err = _call(predict.main, ["--model", run, "--events", log, "--output",
                                          tmp_path / "p.csv"], capsys)
    assert status == 0, err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 300
