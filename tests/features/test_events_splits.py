"""Time-based splits: cutoffs, no label leakage across splits, and the real Taobao sample."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from events_common import REAL_EVENTS

from features.events import BASELINE_COLUMNS, load_event_splits, rolling_cutoffs
from features.synthetic import generate_events, write_canonical_csv


def _ts(s):
    return pd.Timestamp(s, tz="UTC")


def test_rolling_cutoffs_taobao_like_range():
    c = rolling_cutoffs("2017-11-24T16:00Z", "2017-12-03T16:00Z", "2d")
    assert c["test"] == [_ts("2017-12-01 16:00")]
    assert c["dev"] == [_ts("2017-11-29 16:00")]
    # Train every day (stride = min(horizon, 1 day)), the latest label window ending at
    # the dev cutoff, with at least one day of history.
    assert c["train"] == [_ts("2017-11-25 16:00"), _ts("2017-11-26 16:00"),
                          _ts("2017-11-27 16:00")]


@pytest.mark.parametrize("horizon,stride", [("12h", None), ("1d", "6h"), ("2d", "2d")])
def test_label_windows_end_before_next_split(horizon, stride):
    h = pd.Timedelta(horizon.replace("d", "D"))
    c = rolling_cutoffs("2024-01-01", "2024-01-11", horizon, stride=stride)
    assert all(t + h <= c["dev"][0] for t in c["train"])
    assert c["dev"][0] + h <= c["test"][0]
    assert c["test"][0] + h <= _ts("2024-01-11")
    assert c["train"] == sorted(c["train"]) and len(c["train"]) >= 2


def test_cutoff_errors():
    with pytest.raises(ValueError, match="labels would be incomplete"):
        rolling_cutoffs("2024-01-01", "2024-01-11", "1d", cutoff="2024-01-10 12:00")
    with pytest.raises(ValueError, match="too short"):
        rolling_cutoffs("2024-01-01", "2024-01-04", "1d")


def test_load_event_splits_on_synthetic_log(tmp_path):
    ev = generate_events(n_users=400, days=9, n_items=500, n_categories=20, seed=5)
    path = tmp_path / "events.csv"
    write_canonical_csv(ev, path)
    s = load_event_splits(path, "canonical", "1d")
    info = s.info
    json.dumps(info)
    assert s.baseline_columns == BASELINE_COLUMNS
    cuts = {k: [pd.Timestamp(x) for x in v] for k, v in info["cutoffs"].items()}
    assert cuts["test"] == [_ts("2017-12-03")] and cuts["dev"] == [_ts("2017-12-02")]
    for X, y in (s.train, s.dev, s.test):
        assert list(X.columns) == info["features"] and X.index.name == "user_id"
        assert X.index.equals(y.index) and set(np.unique(y)) == {0, 1}
        assert np.isfinite(X.to_numpy()).all()
    # Train stacks one snapshot per train cutoff: a user may appear several times.
    assert len(s.train[1]) == info["counts"]["train"]["n_users"] > len(s.dev[1])
    assert s.train[0].index.duplicated().any()
    # The planted signal is learnable from train and shows on test (logistic
    # regression: nn_core's network with no hidden layer, on standardised log1p features).
    from nn_core import MLP
    from nn_core.metrics import roc_auc

    Z = np.log1p(s.train[0].to_numpy(dtype=float))
    mu, sd = Z.mean(axis=0), Z.std(axis=0) + 1e-9
    m = MLP(Z.shape[1], hidden=(), dtype="float64", seed=0)
    m.fit((Z - mu) / sd, s.train[1].to_numpy(dtype=float), epochs=30, lr=1e-2, l2=1e-3)
    Z_test = (np.log1p(s.test[0].to_numpy(dtype=float)) - mu) / sd
    assert roc_auc(s.test[1].to_numpy(), m.predict_proba(Z_test)) > 0.7


@pytest.mark.skipif(not REAL_EVENTS.is_dir(),
                    reason=f"real event samples not found at {REAL_EVENTS} "
                           "(they are never copied into the repo)")
def test_real_taobao_splits():
    s = load_event_splits(REAL_EVENTS / "taobao_userbehavior_head_sample.csv", "taobao", "2d")
    c = s.info["cutoffs"]
    assert c["test"] == ["2017-12-01T16:00:00+00:00"]  # two days before the log's end
    assert c["dev"] == ["2017-11-29T16:00:00+00:00"]
    assert s.info["report"]["n_out_of_range"] == 35
    assert len(s.test[1]) == 814  # every user has an event before the test cutoff
    assert 0 < s.test[1].mean() < 1


def test_event_data_adapter_is_one_split_for_every_seed(tmp_path):
    """features.datasets.EventData: the time-based split train.py --events trains on."""
    from features.datasets import EventData, SplitError

    path = tmp_path / "events.csv"
    ev = generate_events(n_users=400, days=9, n_items=500, n_categories=20, seed=5)
    write_canonical_csv(ev, path)
    data = EventData(path, "canonical", "1d")
    split = data.split(0)
    assert data.split(3) is split  # seeds only change initialisation and row order
    assert data.info["kind"] == "events" and data.info["horizon"] == "1d"
    json.dumps(data.info)
    assert split.pre.source == {"kind": "events", "format": "canonical", "horizon": "1d"}
    assert split.pre.id_column == "user_id" and split.pre.target == "label"
    assert split.baseline_pre.input_columns == list(BASELINE_COLUMNS)
    s = load_event_splits(path, "canonical", "1d")
    for part, (X, y) in zip(("train", "dev", "test"), (s.train, s.dev, s.test), strict=True):
        assert split.X[part].shape == (len(X), split.pre.n_features)
        assert split.baseline_X[part].shape == (len(X), len(BASELINE_COLUMNS))
        np.testing.assert_array_equal(split.y[part], y.to_numpy())
    # a log in which nobody buys cannot be split into buyers and non-buyers
    write_canonical_csv(ev[ev["event_type"] != "purchase"], path)
    with pytest.raises(SplitError, match="snapshot needs buyers and non-buyers"):
        EventData(path, "canonical", "1d")
