"""Parquet event logs (same validation as CSV) and the Dask engine (same results as pandas)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import events as E
from features.synthetic import generate_events, write_canonical_csv

pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (pip install '.[scale]')")


def _taobao(ev: pd.DataFrame) -> pd.DataFrame:
    """A canonical log as a typed Taobao table (ints, unix seconds, behaviour codes)."""
    codes = {"view": "pv", "cart": "cart", "fav": "fav", "purchase": "buy",
             "remove_from_cart": "pv"}
    return pd.DataFrame({"user_id": ev["user_id"], "item_id": ev["item_id"],
                         "category_id": ev["category"],
                         "behavior_type": ev["event_type"].astype(str).map(codes),
                         "timestamp": ev["timestamp"].astype("int64") // 10**9})


@pytest.fixture(scope="module")
def small_log():
    return generate_events(25, seed=2)


def _message(path, fmt, **kw) -> str:
    with pytest.raises(E.EventLogError) as err:
        E.read_events(path, fmt, **kw)
    return str(err.value)


def test_parquet_reads_as_csv(tmp_path, small_log):
    """A typed Parquet log gives the same canonical table and report as its CSV."""
    write_canonical_csv(small_log, tmp_path / "a.csv")
    small_log.to_parquet(tmp_path / "a.parquet")
    a, b = E.read_events(tmp_path / "a.csv"), E.read_events(tmp_path / "a.parquet")
    ra, rb = a.attrs.pop("report"), b.attrs.pop("report")
    pd.testing.assert_frame_equal(a, b)
    assert {k: v for k, v in ra.items() if k != "path"} == \
        {k: v for k, v in rb.items() if k != "path"}
    t = _taobao(small_log)
    t.to_csv(tmp_path / "t.csv", index=False)
    t.to_parquet(tmp_path / "t.pq")
    a, b = E.read_events(tmp_path / "t.csv", "taobao"), E.read_events(tmp_path / "t.pq", "taobao")
    a.attrs.clear()
    b.attrs.clear()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("column, value, reason", [
    ("item_id", "x1", "not an integer"),         # text in an id column (a string column)
    ("timestamp", None, "missing timestamp"),    # a null in a typed column
    ("behavior_type", "click", "unknown event type"),
])
def test_parquet_bad_cell_same_message_as_csv(tmp_path, small_log, column, value, reason):
    """A bad cell is reported with the same row, column, value and reason as in the CSV;
    Parquet's row is the row index + 1 (no header line)."""
    t = _taobao(small_log)
    if column == "timestamp":
        t["timestamp"] = t["timestamp"].astype("Int64")
    else:
        t[column] = t[column].astype(str)
    t.loc[6, column] = value if value is not None else pd.NA
    t.to_csv(tmp_path / "bad.csv", index=False)
    t.to_parquet(tmp_path / "bad.parquet")
    csv, pq = _message(tmp_path / "bad.csv", "taobao"), _message(tmp_path / "bad.parquet",
                                                                 "taobao")
    assert "row 7 (1-based data row, header not counted; file line 8)" in csv
    assert "row 7 (1-based data row = Parquet row index + 1)" in pq
    assert f"column '{column}': {reason}" in pq
    assert csv.split("), ", 1)[1] == pq.split("), ", 1)[1]  # column, reason, value, hint
    a = E.read_events(tmp_path / "bad.csv", "taobao", drop_invalid=True)
    b = E.read_events(tmp_path / "bad.parquet", "taobao", drop_invalid=True)
    ra, rb = a.attrs.pop("report"), b.attrs.pop("report")
    assert ra["invalid_examples"] == rb["invalid_examples"]
    assert ra["invalid_by_reason"] == rb["invalid_by_reason"] and ra["n_invalid"] == 1
    pd.testing.assert_frame_equal(a, b)


def test_not_parquet_named(tmp_path):
    (tmp_path / "x.parquet").write_text("user_id,timestamp,event_type\n1,0,view\n")
    with pytest.raises(E.EventFileError, match=r"x\.parquet: cannot read it as Parquet"):
        E.read_events(tmp_path / "x.parquet")


def test_partition_stats_equal_whole_log(small_log):
    """features_at of user partitions with the whole log's EventStats equals the whole-log
    rows bit for bit (the Dask engine's per-partition computation, without Dask)."""
    ev = generate_events(150, seed=4)
    T = pd.Timestamp("2017-12-02 05:00", tz="UTC")
    parts = [ev[ev["user_id"] % 3 == k] for k in range(3)]
    stats = E.EventStats.combine([E.event_stats(p, T) for p in parts])
    got = pd.concat([E.features_at(p, T, stats=stats) for p in parts]).sort_index()
    pd.testing.assert_frame_equal(got, E.features_at(ev, T), check_exact=True)
    # without the whole log's stats, a partition's popularity features differ
    alone = E.features_at(parts[0], T)
    assert not alone["item_popularity_mean"].equals(got.loc[alone.index, "item_popularity_mean"])


@pytest.mark.slow  # importing dask.dataframe takes about a second
def test_dask_scan_reports_the_first_bad_cell(tmp_path, small_log):
    """The Dask engine's scan (here on Dask's in-process scheduler) raises the pandas
    reader's message for the first bad cell of the file, whichever partition is scanned
    first, with the file's count of invalid rows."""
    pytest.importorskip("dask", reason="the Dask engine needs dask")
    import dask

    from features import dask_engine as D

    t = _taobao(small_log)
    assert len(t) > 1500
    t.loc[[3, 700, 1400], "behavior_type"] = ["click", "zoom", "peek"]
    t.to_parquet(tmp_path / "bad.parquet", row_group_size=500)
    expected = _message(tmp_path / "bad.parquet", "taobao")
    assert "row 4 (" in expected and "(3 invalid rows in total)" in expected
    with dask.config.set(scheduler="sync"), pytest.raises(E.EventLogError) as err:
        D.read_events(tmp_path / "bad.parquet", "taobao", rows=500)
    assert str(err.value) == expected
    assert len(D.partitions([tmp_path / "bad.parquet"], rows=500)) >= 3


@pytest.mark.slow
def test_dask_engine_equals_pandas_engine(tmp_path, monkeypatch):
    """1 M synthetic events from Parquet on a 2-worker LocalCluster (reached through
    ``--scheduler``): train.py's time-based splits (features and labels) equal the pandas
    engine's exactly, its metrics.json is the same, and predict.py's scores agree within
    1e-6 for the same users."""
    pytest.importorskip("distributed", reason="the Dask engine needs dask[distributed]")
    from distributed import LocalCluster

    from features import dask_engine as D
    from propensity import predict, train

    ev = generate_events(13_100, seed=7)  # 1.0 M events
    assert len(ev) >= 1_000_000
    log = tmp_path / "log.parquet"
    ev.to_parquet(log, row_group_size=250_000)
    del ev
    splits = {}  # what each engine's train.py run computed

    def keep(engine, load):
        def run(*args, **kwargs):
            splits[engine] = load(*args, **kwargs)
            return splits[engine]
        return run

    monkeypatch.setattr(E, "load_event_splits", keep("pandas", E.load_event_splits))
    monkeypatch.setattr(D, "load_event_splits", keep("dask", D.load_event_splits))
    monkeypatch.setattr(D, "ROWS_PER_PARTITION", 250_000)  # 4 partitions
    common = ["--events", str(log), "--horizon", "1d", "--epochs", "1", "--quiet"]
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="2GiB",
                      dashboard_address=None) as cluster:
        dask = ["--engine", "dask", "--scheduler", cluster.scheduler_address]
        assert train.main([*common, "--output", str(tmp_path / "m_pandas")]) == 0
        assert train.main([*common, *dask, "--output", str(tmp_path / "m_dask")]) == 0
        model = tmp_path / "m_pandas"
        for engine, flags in (("pandas", []), ("dask", dask)):
            assert predict.main(["--model", str(model), "--events", str(log), "--no-drift",
                                 *flags, "--output", str(tmp_path / f"{engine}.parquet")]) == 0
    got, ref = splits["dask"], splits["pandas"]
    for part in ("train", "dev", "test"):
        pd.testing.assert_frame_equal(getattr(got, part)[0], getattr(ref, part)[0],
                                      check_exact=True)
        pd.testing.assert_series_equal(getattr(got, part)[1], getattr(ref, part)[1])
    assert len(ref.test[0]) > 12_000 and len(ref.train[0]) > len(ref.test[0])
    assert json.dumps(got.info) == json.dumps(ref.info)

    metrics = [json.loads((tmp_path / m / "metrics.json").read_text())
               for m in ("m_pandas", "m_dask")]
    for m in metrics:
        for key in ("created", "seconds", "command"):
            m.pop(key)
    assert metrics[0] == metrics[1]

    a, b = (pd.read_parquet(tmp_path / f"{e}.parquet") for e in ("pandas", "dask"))
    assert len(a) > 12_000 and list(a.columns) == list(b.columns)
    assert (a["user_id"] == b["user_id"]).all()
    np.testing.assert_allclose(b["propensity"], a["propensity"], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- session tables


def _uci_head(n=300):
    from features.tabular import Schema

    df = pd.read_csv(Path(__file__).parents[2] / "data" / "online_shoppers_intention.csv",
                     nrows=n)
    return df, Schema.uci()


def test_session_table_parquet_reads_as_csv(tmp_path):
    """read_table of a typed Parquet table equals that of its CSV (the same frame)."""
    from features.tabular import read_table

    df, schema = _uci_head()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    a, b = (read_table(tmp_path / f"t.{x}", schema, chunksize=128)[0] for x in ("csv", "parquet"))
    pd.testing.assert_frame_equal(a, b, check_categorical=False)


@pytest.mark.parametrize("column, value", [("ProductRelated_Duration", "abc"),
                                           ("ProductRelated_Duration", None),
                                           ("Month", None)])
def test_session_table_parquet_bad_cell(tmp_path, column, value):
    """Text in a number column (a string column in Parquet) and a null are the CSV's errors,
    naming the same data row (Parquet row index + 1) and column."""
    from features.tabular import DataError, read_table

    df, schema = _uci_head()
    df[column] = df[column].astype(object)
    df.loc[41, column] = value
    if value is not None:
        df[column] = df[column].astype(str)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    errors = []
    for x in ("csv", "parquet"):
        with pytest.raises(DataError) as err:
            read_table(tmp_path / f"t.{x}", schema, chunksize=100)
        errors.append(err.value)
    assert [(e.row, e.column, e.problem) for e in errors] == [(42, column, errors[0].problem)] * 2
    assert "data row 42 (Parquet row index 41)" in str(errors[1])
