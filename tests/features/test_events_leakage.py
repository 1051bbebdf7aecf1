"""Leakage guard: features at cutoff T depend only on events strictly before T."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from events_common import T, frame

from features.events import EVENT_TYPES, features_at, snapshot
from features.synthetic import generate_events

CUT = pd.Timestamp("2017-11-30 07:30", tz="UTC")


@pytest.fixture(scope="module")
def events():
    return generate_events(n_users=300, days=9, n_items=400, n_categories=20, seed=3)


@pytest.fixture(scope="module")
def X0(events):
    return features_at(events, CUT)


def _after(events):
    return (events["timestamp"] >= CUT).to_numpy()


def test_removing_future_events_changes_nothing(events, X0):
    assert _after(events).sum() > 1000  # the check below is not vacuous
    pd.testing.assert_frame_equal(features_at(events[~_after(events)], CUT), X0, check_exact=True)


def test_altering_future_events_changes_nothing(events, X0):
    rng = np.random.default_rng(0)
    ev = events.copy()
    after = _after(ev)
    n = int(after.sum())
    # Every column of every future event is rewritten: new users, items, categories,
    # types, prices and (still >= T) timestamps; the popular pre-T items get bought.
    ev.loc[after, "user_id"] = rng.integers(1, 400, n)
    ev.loc[after, "item_id"] = rng.integers(0, 5, n)
    ev.loc[after, "category"] = rng.integers(0, 3, n)
    ev.loc[after, "price"] = rng.uniform(0, 1000, n)
    ev.loc[after, "session_id"] = rng.integers(0, 10, n)
    ev.loc[after, "event_type"] = pd.Categorical(rng.choice(EVENT_TYPES, n),
                                                 categories=EVENT_TYPES)
    ev.loc[after, "timestamp"] = CUT + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")
    pd.testing.assert_frame_equal(features_at(ev, CUT), X0, check_exact=True)


def test_adding_future_events_changes_nothing(events, X0):
    rng = np.random.default_rng(1)
    n = 5000
    extra = pd.DataFrame({
        "user_id": rng.integers(1, 500, n),  # existing and brand-new users
        "timestamp": CUT + pd.to_timedelta(rng.integers(0, 3 * 86400, n), unit="s"),
        "event_type": pd.Categorical(rng.choice(EVENT_TYPES, n), categories=EVENT_TYPES),
        "session_id": rng.integers(0, 10**6, n),
        "item_id": rng.integers(0, 5, n),
        "category": rng.integers(0, 3, n),
        "price": rng.uniform(0, 10, n),
    })
    extra.loc[0, "timestamp"] = CUT  # an event exactly at T is "future" too
    for ev in (pd.concat([events, extra], ignore_index=True),
               pd.concat([extra, events], ignore_index=True)):
        pd.testing.assert_frame_equal(features_at(ev, CUT), X0, check_exact=True)


def test_row_order_does_not_matter(events, X0):
    shuffled = events.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(features_at(shuffled, CUT), X0, rtol=1e-12)


def test_guard_is_sensitive_to_past_events(events, X0):
    # The converse: changing one event before T does change the features.
    ev = events.copy()
    i = int(np.flatnonzero(~_after(ev))[0])
    ev.loc[i, "event_type"] = "purchase" if ev.loc[i, "event_type"] != "purchase" else "view"
    assert not features_at(ev, CUT).equals(X0)


def test_popularity_only_from_events_before_T():
    # On the hand log, thousands of future purchases of item 10 / category 1 (by a new
    # user) would raise their conversion rates if they leaked; they must not.
    ev = frame()
    base = features_at(ev, T)
    n = 2000
    flood = pd.DataFrame({
        "user_id": 99, "timestamp": T + pd.to_timedelta(np.arange(n), unit="s"),
        "event_type": pd.Categorical(["purchase"] * n, categories=EVENT_TYPES),
        "item_id": 10, "category": 1, "price": 5.0})
    flooded = features_at(pd.concat([ev, flood], ignore_index=True), T)
    cols = ["item_popularity_mean", "item_conversion_mean", "category_popularity_mean",
            "category_conversion_mean"]
    pd.testing.assert_frame_equal(flooded[cols], base[cols], check_exact=True)
    # ...while the same flood placed before T moves them (the check can fail).
    early = flood.assign(timestamp=T - pd.to_timedelta(np.arange(1, n + 1), unit="s"))
    moved = features_at(pd.concat([ev, early], ignore_index=True), T).loc[[1, 2], cols]
    assert (moved["item_conversion_mean"] > base["item_conversion_mean"]).all()


def test_snapshot_features_equal_features_at(events, X0):
    X, y = snapshot(events, CUT, "1d")
    pd.testing.assert_frame_equal(X, X0, check_exact=True)
    t = events["timestamp"]
    in_window = (t >= CUT) & (t < CUT + pd.Timedelta("1D")) & (events["event_type"] == "purchase")
    buyers = set(events.loc[in_window, "user_id"])
    assert y.to_dict() == {u: int(u in buyers) for u in X.index}
    assert 0 < y.mean() < 1
