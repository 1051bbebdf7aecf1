"""The Dask engine on several overlapping event files (the pandas engine's union) and its
partitioned Parquet output (``predict.py --engine dask --partitioned --output DIR``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features import events as E
from features.synthetic import generate_events, write_canonical_csv

pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (pip install '.[scale]')")


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """Two CSV files of one log that share 20 % of its rows, each with copies of some of
    its own rows (kept as repeated events), as a daily export may overlap."""
    tmp = tmp_path_factory.mktemp("overlap")
    ev = generate_events(40, seed=3)
    n = len(ev)
    a, b = ev.iloc[: 6 * n // 10], ev.iloc[4 * n // 10:]
    a = pd.concat([a, a.iloc[:5]])                 # 5 events twice in a
    b = pd.concat([b, b.iloc[:3], b.iloc[:3]])     # 3 events three times in b
    paths = [tmp / "a.csv", tmp / "b.csv"]
    write_canonical_csv(a, paths[0])
    write_canonical_csv(b, paths[1])
    return paths


@pytest.mark.slow  # importing dask.dataframe takes about a second
def test_overlapping_files_equal_pandas(overlapping):
    """Dask's union of two overlapping files (on the in-process scheduler) is the pandas
    engine's: the same events (each kept as often as in the file holding it most often),
    report (copies dropped, duplicate rows, core range) and train/dev/test features."""
    dask = pytest.importorskip("dask", reason="the Dask engine needs dask")
    from features import dask_engine as D

    ref = E.read_events(overlapping)
    want = ref.attrs.pop("report")
    assert want["n_overlap_dropped"] > 100 and want["n_duplicate_rows"] == 5 + 2 * 3
    with dask.config.set(scheduler="sync"):
        log = D.read_events(overlapping)
        users, counts = dask.compute(log.users, log.counts)
        got = D.finish_report(log, counts)
        splits = D.load_event_splits(overlapping, "canonical", "1d")
    assert got == want
    # session numbers restart in each partition; the events and their order are the same
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    users.attrs = {}
    pd.testing.assert_frame_equal(users.drop(columns="session_id"),
                                  ref.drop(columns="session_id"))
    expected = E.load_event_splits(overlapping, "canonical", "1d")
    for part in ("train", "dev", "test"):
        pd.testing.assert_frame_equal(getattr(splits, part)[0], getattr(expected, part)[0],
                                      check_exact=True)
        pd.testing.assert_series_equal(getattr(splits, part)[1], getattr(expected, part)[1])
    assert json.dumps(splits.info) == json.dumps(expected.info)


def test_partitioned_refusals(tmp_path, capsys):
    """--partitioned without --engine dask or --output, or onto an existing path: one line,
    exit status 2, the existing path untouched."""
    from propensity import predict

    log = tmp_path / "log.csv"
    log.write_text("user_id,timestamp,event_type\n1,2024-01-01T00:00:00Z,view\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    common = ["--model", str(tmp_path / "m"), "--events", str(log), "--partitioned"]
    for argv, message in (
            (["--output", str(tmp_path / "new")], "--partitioned only applies to --engine dask"),
            (["--engine", "dask"], "--partitioned writes a directory: give --output DIR"),
            (["--engine", "dask", "--output", str(tmp_path / "out")], "exists; --partitioned "
             "writes a new directory and never replaces one"),
            (["--engine", "dask", "--output", str(log)], "exists; --partitioned")):
        assert predict.main([*common, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "out"]
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


@pytest.mark.slow  # a LocalCluster
def test_partitioned_output_equals_one_file(overlapping, tmp_path, capsys):
    """predict.py --engine dask --partitioned on a 2-process LocalCluster writes one
    Parquet part per partition whose rows, read back with pandas.read_parquet(DIR), are
    the pandas engine's one-file output: the same users, schema, scores within 1e-6, the
    same global ranks (where no other score is within 1e-6), deciles and labels."""
    pytest.importorskip("distributed", reason="the Dask engine needs dask[distributed]")
    import pyarrow.parquet as pq
    from distributed import LocalCluster
    from serve_harness import events_model

    from propensity import predict

    log = E.read_events(overlapping)
    model = events_model(tmp_path / "model", E.features_at(log, log.attrs["report"][
        "time_range"][1]))
    common = ["--model", str(model), "--events", *map(str, overlapping), "--no-drift"]
    one, parts = tmp_path / "one.parquet", tmp_path / "parts"
    assert predict.main([*common, "--output", str(one), "--top", "5"]) == 0
    top_pandas = capsys.readouterr().out
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB",
                      dashboard_address=None) as cluster:
        assert predict.main([*common, "--engine", "dask", "--scheduler",
                             cluster.scheduler_address, "--partitioned", "--output",
                             str(parts), "--top", "5"]) == 0
    out = capsys.readouterr()
    assert f"to {parts}/ (Parquet parts)" in out.err
    files = sorted(p.name for p in parts.iterdir())
    assert files == ["part.00000.parquet", "part.00001.parquet"]  # one per file's partition
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".parts.")]
    assert pq.read_schema(parts / files[0]).remove_metadata().equals(
        pq.read_schema(one).remove_metadata())
    a = pd.read_parquet(one)
    b = pd.read_parquet(parts).sort_values("user_id", key=lambda s: s.astype(int),
                                           kind="stable").reset_index(drop=True)
    assert list(b.columns) == list(a.columns) == ["user_id", "propensity", "rank", "decile",
                                                  "label"]
    assert len(a) > 30 and (a["user_id"] == b["user_id"]).all()
    np.testing.assert_allclose(b["propensity"], a["propensity"], rtol=0, atol=1e-6)
    p = np.sort(a["propensity"].to_numpy())
    gap = np.minimum(np.diff(p, prepend=-np.inf), np.diff(p, append=np.inf))
    alone = a["propensity"].isin(p[gap > 1e-6]).to_numpy()
    assert alone.sum() > len(a) // 2
    assert (a["rank"] == b["rank"])[alone].all()
    assert sorted(b["rank"]) == list(range(1, len(b) + 1))
    assert ((b["rank"] - 1) * 10 // len(b) + 1 == b["decile"]).all()
    assert (a["label"] == b["label"]).all()
    assert out.out.splitlines()[1:] == top_pandas.splitlines()[1:]  # the top-5 table


@pytest.mark.slow
def test_partitioned_failure_leaves_nothing(overlapping, tmp_path, monkeypatch):
    """A part that fails to be written leaves no output and no temporary directory."""
    dask = pytest.importorskip("dask", reason="the Dask engine needs dask")
    from serve_harness import events_model

    from features import dask_engine as D
    from nn_core import load_model

    log = E.read_events(overlapping)
    model = load_model(events_model(tmp_path / "model", E.features_at(log, log.attrs[
        "report"]["time_range"][1])))
    write = D._write_part

    def fail_second(df, rank, n, threshold, path):
        if path.endswith("part.00001.parquet"):
            raise OSError(28, "No space left on device", path)
        return write(df, rank, n, threshold, path)

    monkeypatch.setattr(D, "_write_part", fail_second)
    with dask.config.set(scheduler="sync"), pytest.raises(OSError, match="No space"):
        D.write_parquet_parts(overlapping, model, tmp_path / "parts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
