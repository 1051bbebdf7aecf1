"""The synthetic clickstream generator: schema, determinism and the planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.events import EVENT_TYPES, read_events, snapshot
from features.synthetic import generate_events, write_canonical_csv


def test_schema_order_and_determinism():
    a = generate_events(n_users=50, days=3, n_items=100, n_categories=10, seed=1)
    b = generate_events(n_users=50, days=3, n_items=100, n_categories=10, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(generate_events(n_users=50, days=3, n_items=100, n_categories=10,
                                        seed=2))
    assert list(a.columns) == ["user_id", "timestamp", "event_type", "session_id", "item_id",
                               "category", "price"]
    assert list(a["event_type"].cat.categories) == list(EVENT_TYPES)
    assert a["timestamp"].min() >= pd.Timestamp("2017-11-25", tz="UTC")
    assert a["timestamp"].max() < pd.Timestamp("2017-11-28", tz="UTC")
    key = a[["user_id", "timestamp"]].to_numpy(dtype=np.int64)
    assert (np.diff(key[:, 0]) >= 0).all()
    same_user = np.diff(key[:, 0]) == 0
    assert (np.diff(key[:, 1])[same_user] >= 0).all()
    # Each (item) has one price and one category.
    assert (a.groupby("item_id")[["price", "category"]].nunique() == 1).all().all()


def test_purchases_follow_carts():
    ev = generate_events(n_users=300, n_items=500, n_categories=20, seed=4)
    buys = ev[ev["event_type"] == "purchase"]
    carts = ev[ev["event_type"] == "cart"]
    first_cart = carts.groupby(["user_id", "item_id"])["timestamp"].min()
    joined = buys.join(first_cart.rename("cart_time"), on=["user_id", "item_id"])
    # Every purchase was carted first, by the same user.
    assert joined["cart_time"].notna().all()
    assert (joined["cart_time"] <= joined["timestamp"]).all()


def test_planted_signal_intent_raises_future_purchases():
    ev = generate_events(n_users=2000, n_items=2000, n_categories=50, seed=0)
    z = np.asarray(ev.attrs["intent"])
    X, y = snapshot(ev, "2017-12-01", "2d")
    intent = z[X.index.to_numpy() - 1]
    high = y[intent > 0.5].mean()
    low = y[intent < -0.5].mean()
    assert high > 2 * low
    # Users with an open cart buy more often in the next two days than those without.
    assert y[X["has_open_cart"] == 1].mean() > 1.5 * y[X["has_open_cart"] == 0].mean()


def test_canonical_csv_round_trip(tmp_path):
    ev = generate_events(n_users=20, days=2, n_items=50, n_categories=5, seed=0)
    write_canonical_csv(ev, tmp_path / "ev.csv")
    back = read_events(tmp_path / "ev.csv", "canonical", out_of_range="keep")
    pd.testing.assert_frame_equal(back, ev, check_like=False, check_exact=True)
