"""Readers for the Taobao, REES46 and canonical formats: schema, validation, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from events_common import REAL_EVENTS

from features.events import EVENT_TYPES, EventLogError, read_events

TAOBAO = """user_id,item_id,category_id,behavior_type,timestamp
1,2268318,2520377,pv,1511544070
1,2333346,2520771,cart,1511544170
1,2333346,2520771,buy,1511544230
2,46259,2520377,fav,1511600000
2,46259,2520377,pv,1511609000
"""

REES46 = "\n".join([
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session",
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d7-a",
    "2019-10-01 00:00:05 UTC,cart,3900821,2053013552326770905,appliances.water_heater,aqua,33.20,"
    "554748717,9333-b",
    "2019-10-01 00:01:00 UTC,purchase,3900821,2053013552326770905,appliances.water_heater,,33.20,"
    "554748717,9333-b",
    "2019-10-01 00:02:00 UTC,remove_from_cart,17302664,2053013553853497655,,creed,28.31,"
    "541312140,72d7-a",
    ""])


def _write(tmp_path, text, name="log.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_taobao_schema_and_mapping(tmp_path):
    df = read_events(_write(tmp_path, TAOBAO), "taobao")
    assert list(df.columns) == ["user_id", "timestamp", "event_type", "session_id", "item_id",
                                "category"]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert list(df["event_type"].cat.categories) == list(EVENT_TYPES)
    assert df["event_type"].tolist() == ["view", "cart", "purchase", "fav", "view"]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2017-11-24 17:21:10", tz="UTC")
    assert df["user_id"].dtype == np.int64 and df["item_id"].iloc[1] == 2333346
    # User 2's events are 2.5 h apart: two derived sessions; user 1 has one.
    assert df.groupby("user_id")["session_id"].nunique().to_dict() == {1: 1, 2: 2}
    rep = df.attrs["report"]
    assert rep["sessions_derived"] and rep["n_events"] == 5 and rep["n_users"] == 2
    json.dumps(rep)  # JSON-serialisable


def test_taobao_without_header(tmp_path):
    df = read_events(_write(tmp_path, TAOBAO.split("\n", 1)[1]), "taobao")
    assert len(df) == 5 and df["event_type"].iloc[3] == "fav"


def test_rees46_schema(tmp_path):
    df = read_events(_write(tmp_path, REES46), "rees46")
    assert df["event_type"].tolist() == ["view", "remove_from_cart", "cart", "purchase"]
    assert df["session_id"].tolist() == ["72d7-a", "72d7-a", "9333-b", "9333-b"]
    assert df["price"].tolist() == [35.79, 28.31, 33.20, 33.20]
    # 19-digit category ids exceed what we store as int64 safely: kept as strings.
    assert df["category"].iloc[0] == "2103807459595387724"
    assert df["timestamp"].iloc[3] == pd.Timestamp("2019-10-01 00:01:00", tz="UTC")
    assert not df.attrs["report"]["sessions_derived"]


def test_canonical_iso_and_unix(tmp_path):
    text = ("user_id,timestamp,event_type,item_id,price\n"
            "u1,2024-01-10T10:00:00Z,view,7,1.5\n"
            "u1,2024-01-10 12:00:00+02:00,purchase,7,\n"
            "u2,2024-01-10T09:00:00,cart,,2\n")
    df = read_events(_write(tmp_path, text), "canonical")
    assert df["user_id"].tolist() == ["u1", "u1", "u2"]
    # +02:00 is converted; a naive time is UTC.
    assert df["timestamp"].tolist() == [pd.Timestamp("2024-01-10 10:00", tz="UTC")] * 2 + [
        pd.Timestamp("2024-01-10 09:00", tz="UTC")]
    assert np.isnan(df["price"].iloc[1]) and df["item_id"].isna().tolist() == [False, False, True]
    unix = read_events(_write(tmp_path, "user_id,timestamp,event_type\n5,1704880800,view\n",
                              "u.csv"), "canonical")
    assert unix["timestamp"].iloc[0] == pd.Timestamp("2024-01-10 10:00", tz="UTC")


@pytest.mark.parametrize("fmt,text,row,column,value", [
    ("taobao", TAOBAO.replace("2,46259,2520377,fav", "2,46259,2520377,click"), 4,
     "behavior_type", "click"),
    ("taobao", TAOBAO.replace("buy,1511544230", "buy,yesterday"), 3, "timestamp", "yesterday"),
    ("taobao", TAOBAO.replace("2,46259,2520377,pv", ",46259,2520377,pv"), 5, "user_id", ""),
    ("rees46", REES46.replace("2019-10-01 00:01:00 UTC", "2019-13-01 00:01:00 UTC"), 3,
     "event_time", "2019-13-01 00:01:00 UTC"),
    ("rees46", REES46.replace(",28.31,", ",abc,"), 4, "price", "abc"),
    ("canonical", "user_id,timestamp,event_type\n1,2024-01-01,view\n1,2024-01-02,checkout\n", 2,
     "event_type", "checkout"),
])
def test_invalid_rows_are_named(tmp_path, fmt, text, row, column, value):
    path = _write(tmp_path, text)
    with pytest.raises(EventLogError) as err:
        read_events(path, fmt)
    msg = str(err.value)
    assert str(path) in msg and f"row {row} " in msg and f"'{column}'" in msg
    assert repr(value) in msg and "1-based data row" in msg
    assert (err.value.row, err.value.column, err.value.value) == (row, column, value)
    # drop_invalid: the row is dropped and counted.
    df = read_events(path, fmt, drop_invalid=True)
    rep = df.attrs["report"]
    assert rep["n_invalid"] == 1 and rep["n_events"] == rep["n_rows"] - 1 == len(df)
    assert rep["invalid_examples"][0]["row"] == row
    assert list(rep["invalid_by_reason"].values()) == [1]


def test_drop_invalid_counts_every_reason(tmp_path):
    text = TAOBAO + "3,1,1,click,1511600000\n3,1,1,pv,noon\n,1,1,pv,1511600000\n"
    df = read_events(_write(tmp_path, text), "taobao", drop_invalid=True)
    rep = df.attrs["report"]
    assert len(df) == 5 and rep["n_invalid"] == 3
    assert [e["row"] for e in rep["invalid_examples"]] == [6, 7, 8]
    assert any(k.startswith("behavior_type") for k in rep["invalid_by_reason"])
    assert any(k.startswith("timestamp") for k in rep["invalid_by_reason"])
    assert any(k.startswith("user_id") for k in rep["invalid_by_reason"])


def test_missing_column_and_bad_format(tmp_path):
    with pytest.raises(ValueError, match=r"missing column.*'event_time'"):
        read_events(_write(tmp_path, "a,b\n1,2\n"), "rees46")
    with pytest.raises(ValueError, match="unknown event-log format"):
        read_events(_write(tmp_path, TAOBAO), "parquet")


def test_out_of_range_events_are_reported(tmp_path):
    # 8000 events over 22 h, plus 3 stray events (< 0.05 % of the log) earlier.
    base = 1_700_000_000 - 1_700_000_000 % 3600
    ts = base + np.arange(8000) * 10
    lines = [f"{1 + i % 50},{i},{i % 7},pv,{t}" for i, t in enumerate(ts)]
    lines += [f"1,1,1,pv,{base - 30 * 86400}", f"2,1,1,buy,{base - 20 * 86400}",
              f"3,1,1,pv,{base - 7200}"]
    path = _write(tmp_path, "user_id,item_id,category_id,behavior_type,timestamp\n"
                  + "\n".join(lines) + "\n")
    df = read_events(path, "taobao")
    rep = df.attrs["report"]
    assert rep["n_out_of_range"] == 3 and len(df) == 8000
    assert rep["time_range"][0] == pd.Timestamp(base, unit="s", tz="UTC").isoformat()
    assert rep["out_of_range_examples"][0] == pd.Timestamp(base - 30 * 86400, unit="s",
                                                           tz="UTC").isoformat()
    kept = read_events(path, "taobao", out_of_range="keep")
    assert len(kept) == 8003 and kept.attrs["report"]["n_out_of_range"] == 3


# --------------------------------------------------------------------------- real samples

TAOBAO_REAL = REAL_EVENTS / "taobao_userbehavior_head_sample.csv"
REES46_REAL = REAL_EVENTS / "rees46_2019-Oct_head_sample.csv"
needs_real = pytest.mark.skipif(not REAL_EVENTS.is_dir(),
                                reason=f"real event samples not found at {REAL_EVENTS} "
                                       "(they are never copied into the repo)")


@needs_real
def test_real_taobao_sample_matches_its_readme():
    df = read_events(TAOBAO_REAL, "taobao", out_of_range="keep")
    rep = df.attrs["report"]
    assert rep["n_rows"] == 84_287 and rep["n_invalid"] == 0
    assert df["event_type"].value_counts().to_dict() == {
        "view": 75_693, "cart": 4_494, "fav": 2_351, "purchase": 1_749, "remove_from_cart": 0}
    assert rep["n_users"] == 814 and df["item_id"].nunique() == 55_233
    # The 35 stray early events of the original dataset, before 2017-11-25 China time.
    assert rep["n_out_of_range"] == 35
    assert rep["time_range"] == ["2017-11-24T16:00:00+00:00", "2017-12-03T16:00:00+00:00"]
    assert rep["out_of_range_examples"][0] == "2017-09-11T08:16:39+00:00"
    assert len(read_events(TAOBAO_REAL, "taobao")) == 84_287 - 35


@needs_real
def test_real_rees46_sample_matches_its_readme():
    df = read_events(REES46_REAL, "rees46")
    rep = df.attrs["report"]
    assert rep["n_events"] == 17_434 and rep["n_out_of_range"] == 0
    assert rep["n_users"] == 4_504 and df["session_id"].nunique() == 5_066
    assert rep["n_duplicate_rows"] == 5
    assert df["event_type"].value_counts()[["view", "purchase", "cart"]].tolist() == [
        17_055, 214, 165]
    assert df["price"].between(0, 2574.07).all()
