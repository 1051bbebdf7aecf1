"""predict.py --explain K and --explain-row N --plot FILE (issue 18.2 and 18.5), in-process:
the reason columns equal the Python API's, the scores are unchanged, the stderr summary,
the waterfall PNG, refusals that write nothing, --top, skipped rows, and event-log users."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"

pytestmark = pytest.mark.slow  # predict.py in-process (the in-process CLI modules are slow)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A UCI model (a few epochs on seed 0's training split) with its drift reference, as
    train.py writes it."""
    from features.datasets import TableData
    from features.tabular import Schema
    from features.training_run import drift_reference
    from nn_core import MLP, save_model

    split = TableData(UCI, Schema.uci()).split(0)
    net = MLP(split.X["train"].shape[1], hidden=(8,), seed=0, backend="numpy")
    net.fit(split.X["train"], split.y["train"], epochs=2, batch_size=128, lr=3e-3)
    return save_model(tmp_path_factory.mktemp("model") / "run", net, split.pre,
                      reference=drift_reference(net, split.pre, split, split.X))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Every 40th UCI row (309 rows) as a CSV."""
    frame = pd.read_csv(UCI, dtype=str, keep_default_na=False).iloc[::40]
    path = tmp_path_factory.mktemp("in") / "sample.csv"
    frame.to_csv(path, index=False)
    return path


def predict(capsys, *args) -> tuple[int, str]:
    from propensity.predict import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_explain_columns_equal_the_python_api(model_dir, sample, tmp_path, capsys):
    from features.tabular import Schema, load_table
    from nn_core import load_model
    from nn_core.explain import explain

    plain, explained = tmp_path / "plain.csv", tmp_path / "explained.csv"
    assert predict(capsys, "--model", model_dir, "--input", sample, "--output", plain)[0] == 0
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output", explained,
                        "--explain", 3, "--chunksize", 100)
    assert code == 0, err
    got, base = pd.read_csv(explained), pd.read_csv(plain)
    assert list(got.columns) == ["row", "reason_1", "contribution_1", "reason_2",
                                 "contribution_2", "reason_3", "contribution_3",
                                 "propensity", "rank", "decile"]
    pd.testing.assert_frame_equal(got[base.columns], base)  # the scores are unchanged
    model = load_model(model_dir)
    pre = model.preprocessing
    frame = load_table(sample, Schema(None, *(tuple(c["name"] for c in pre.columns
                                                    if c["kind"] == kind)
                                              for kind in ("numeric", "categorical"))),
                       with_target=False)
    want = explain(model, frame, 3)
    for i in (1, 2, 3):
        assert got[f"reason_{i}"].tolist() == want[f"reason_{i}"].tolist()
        np.testing.assert_allclose(got[f"contribution_{i}"], want[f"contribution_{i}"],
                                   rtol=1e-5, atol=1e-9)
    # the largest contribution comes first, signed
    assert (got["contribution_1"].abs() >= got["contribution_2"].abs()).all()
    assert (got["contribution_1"] < 0).any() and (got["contribution_1"] > 0).any()
    line = next(x for x in err.splitlines() if "--explain:" in x)
    assert "training medians and most frequent categories" in line
    assert f"failed for 0 of {len(got):,} rows" in line
    assert f"f(baseline) = {want['baseline_probability'].iloc[0]:.6g}" in line
    assert "calibration" not in line  # a plain model has none


def test_explain_row_draws_the_waterfall(model_dir, sample, tmp_path, capsys):
    out, png = tmp_path / "scores.csv", tmp_path / "row.png"
    code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output", out,
                        "--explain-row", 7, "--plot", png, "--chunksize", 50)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote the reasons of row 7 to {png}" in err
    assert "reason_1" not in pd.read_csv(out).columns  # no --explain: no columns


def test_explain_row_plot_format_follows_the_suffix(model_dir, sample, tmp_path, capsys):
    for name, magic in (("row.pdf", b"%PDF"), ("row.SVG", b"<?xml")):
        code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output",
                            tmp_path / f"{name}.csv", "--explain-row", 2, "--plot",
                            tmp_path / name)
        assert code == 0, err
        assert (tmp_path / name).read_bytes().startswith(magic), name


def test_explain_refusals_write_nothing(model_dir, sample, tmp_path, capsys):
    out, png = tmp_path / "scores.csv", tmp_path / "row.png"
    cases = [
        (["--explain", -1], "--explain must be >= 1"),
        (["--explain", 99], "--explain 99: k must be in [1, 17]"),
        (["--explain-row", 3], "--explain-row N and --plot FILE go together"),
        (["--plot", png], "--explain-row N and --plot FILE go together"),
        (["--explain-row", 0, "--plot", png], "--explain-row must be >= 1"),
        (["--explain-row", 400, "--plot", png], "--explain-row 400: no such row was scored"),
        (["--explain-row", 1, "--plot", sample], "is the input file"),
        (["--explain-row", 1, "--plot", out], "is the --output file"),
        (["--explain", 1, "--keep-columns", "reason_1"], "'reason_1'"),
        (["--explain-row", 1, "--plot", tmp_path / "row.jpgg"],
         "a figure cannot be written as '.jpgg'"),
    ]
    for extra, message in cases:
        code, err = predict(capsys, "--model", model_dir, "--input", sample, "--output", out,
                            *extra)
        assert code == 2 and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not png.exists(), extra
        assert not (tmp_path / "row.jpgg").exists(), extra


def test_explain_is_refused_with_the_dask_engine(model_dir, sample, tmp_path, capsys):
    pytest.importorskip("dask", reason="--engine dask needs the scale extra")
    out = tmp_path / "scores.csv"
    code, err = predict(capsys, "--model", model_dir, "--events", sample, "--engine", "dask",
                        "--output", out, "--explain", 1)
    assert code == 2 and "--explain and --explain-row apply to the pandas engine" in err
    assert not out.exists()


def test_top_and_skipped_rows(model_dir, sample, tmp_path, capsys):
    from propensity.predict import main

    assert main(["--model", str(model_dir), "--input", str(sample), "--top", "3",
                 "--explain", "2"]) == 0
    printed = capsys.readouterr().out
    assert "reason_1" in printed and "contribution_2" in printed
    # a bad cell in data row 2 is skipped: row numbers stay the file's, and row 3 is explained
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False)
    frame.loc[1, "PageValues"] = "oops"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    out, png = tmp_path / "s.csv", tmp_path / "r.png"
    code, err = predict(capsys, "--model", model_dir, "--input", bad, "--output", out,
                        "--on-invalid", "skip", "--explain", 1, "--explain-row", 3,
                        "--plot", png)
    assert code == 0, err
    got = pd.read_csv(out)
    assert 2 not in got["row"].tolist() and got["reason_1"].notna().all()
    assert png.is_file()
    code, err = predict(capsys, "--model", model_dir, "--input", bad, "--output", out,
                        "--on-invalid", "skip", "--explain-row", 2, "--plot", png)
    assert code == 2 and "--explain-row 2: no such row was scored" in err


def test_event_log_users_are_explained(tmp_path):
    """Event-log models have numeric features only; score_events explains each user."""
    from features.events import features_at, read_events
    from features.scoring import score_events
    from features.synthetic import generate_events, write_canonical_csv
    from features.tabular import Preprocessor
    from nn_core import MLP, load_model, save_model
    from nn_core.explain import ChunkExplainer, attribute

    log_path = tmp_path / "log.csv"
    write_canonical_csv(generate_events(n_users=120, days=4, seed=0), log_path)
    log = read_events(log_path, format="canonical")
    frame = features_at(log, log.attrs["report"]["time_range"][1])
    pre = Preprocessor(list(frame.columns), [], target="label", id_column="user_id",
                       source={"kind": "events", "format": "canonical", "horizon": "1d"})
    pre.fit(frame.assign(label=0))
    model = load_model(save_model(tmp_path / "m", MLP(pre.n_features, (3,), backend="numpy",
                                                      seed=0), pre), backend="numpy")
    explainer = ChunkExplainer(model, 2, row=5)
    with score_events(log_path, model, explain=explainer) as scored:
        assert list(scored.kept) == explainer.names and explainer.rows == scored.n
    e = attribute(model, model.features(frame))
    np.testing.assert_allclose(explainer.row_explanation.contributions[0], e.contributions[4])
    assert explainer.failed == 0 and "no drift_reference.json" in explainer.summary()
