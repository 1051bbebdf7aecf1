"""Each feature family on a small hand-made log against hand-computed values.

The log is ``events_common.HAND_LOG`` (cutoff T = 2024-01-10 12:00 UTC); the
comments below derive every expected number from it by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from events_common import HAND_LOG, T, frame

from features.events import (
    BASELINE_COLUMNS,
    CONVERSION_PSEUDO_COUNT,
    RECENCY_CAP_HOURS,
    feature_columns,
    features_at,
    snapshot,
)


@pytest.fixture(scope="module")
def X():
    return features_at(frame(), T)


def test_rows_columns_and_finiteness(X):
    # User 3's only event is after T: not scored. Users come sorted by id.
    assert list(X.index) == [1, 2]
    assert X.index.name == "user_id"
    assert list(X.columns) == feature_columns(with_price=True)
    assert np.isfinite(X.to_numpy()).all()
    assert set(BASELINE_COLUMNS) <= set(X.columns)
    # Without a price column the price block is absent.
    assert list(features_at(frame(price=False), T).columns) == feature_columns(False)


def test_counts_overall_and_windows(X):
    # User 1 before T: views a, b, d, f; carts c, g; purchase e (h is at T).
    assert X.loc[1, ["n_view", "n_cart", "n_remove_from_cart", "n_fav", "n_purchase",
                     "n_events"]].tolist() == [4, 2, 0, 0, 1, 7]
    assert X.loc[2, ["n_view", "n_cart", "n_remove_from_cart", "n_fav", "n_purchase",
                     "n_events"]].tolist() == [1, 1, 1, 1, 0, 4]
    # [T-1h, T): f, g.  [T-1d, T) and [T-3d, T): d, e, f, g (a, b, c are 4 days old).
    assert X.loc[1, ["n_view_1h", "n_cart_1h", "n_purchase_1h"]].tolist() == [1, 1, 0]
    assert X.loc[1, ["n_view_1d", "n_cart_1d", "n_purchase_1d"]].tolist() == [2, 1, 1]
    assert X.loc[1, ["n_view_3d", "n_cart_3d", "n_purchase_3d"]].tolist() == [2, 1, 1]
    # User 2's events are 4.5-6 h old: none in the last hour, all in the last day.
    assert X.loc[2, [c for c in X.columns if c.endswith("_1h")]].sum() == 0
    assert X.loc[2, ["n_view_1d", "n_cart_1d", "n_remove_from_cart_1d", "n_fav_1d"]].tolist() \
        == [1, 1, 1, 1]


def test_per_day_rates(X):
    # The log before T starts at event a (2024-01-06 10:00): 4 days 2 hours.
    days = 4 + 2 / 24
    assert X.loc[1, "n_view_per_day"] == pytest.approx(4 / days)
    assert X.loc[1, "n_events_per_day"] == pytest.approx(7 / days)
    assert X.loc[2, "n_fav_per_day"] == pytest.approx(1 / days)


def test_window_is_closed_at_its_start():
    # An event exactly 1 h before T is in the 1-h window; one 1 s earlier is not.
    rows = [("x", 7, "2024-01-10 11:00:00", "view", 1, 1, 1.0),
            ("y", 7, "2024-01-10 10:59:59", "view", 1, 1, 1.0)]
    X = features_at(frame(rows), T)
    assert X.loc[7, "n_view_1h"] == 1
    assert X.loc[7, "n_view_1d"] == 2


def test_distinct_items_categories(X):
    assert X.loc[1, ["n_items", "n_categories"]].tolist() == [3, 2]  # items 10, 11, 12
    assert X.loc[2, ["n_items", "n_categories"]].tolist() == [2, 2]  # items 10, 13


def test_sessions_and_dwell(X):
    # User 1 sessions (30-min gap): {a,b,c} 180 s, {d,e} 600 s, {f,g} 600 s.
    assert X.loc[1, "n_sessions"] == 3
    assert X.loc[1, "session_length_mean"] == pytest.approx(7 / 3)
    assert X.loc[1, "session_duration_mean_s"] == pytest.approx((180 + 600 + 600) / 3)
    # Within-session gaps 60, 120, 600, 600 s.
    assert X.loc[1, "dwell_mean_s"] == pytest.approx((60 + 120 + 600 + 600) / 4)
    assert X.loc[1, "dwell_max_s"] == 600
    # User 2: a gap of exactly 30 min stays in the session: {i,j,k} 3000 s, {l} 0 s.
    assert X.loc[2, "n_sessions"] == 2
    assert X.loc[2, "session_duration_mean_s"] == pytest.approx(1500)
    assert X.loc[2, ["dwell_mean_s", "dwell_max_s"]].tolist() == [1500, 1800]


def test_sessions_from_log_ids_are_used():
    ev = frame().assign(session_id=["s1"] * 8 + ["s2", "s2", "s3", "s3", "s4"])
    X = features_at(ev, T)
    # User 1 is one logged session spanning days: duration from a to g.
    assert X.loc[1, "n_sessions"] == 1
    assert X.loc[1, "session_duration_mean_s"] == (T - pd.Timestamp("2024-01-06 10:00",
                                                                     tz="UTC")).total_seconds() \
        - 20 * 60
    assert X.loc[2, "n_sessions"] == 2
    assert X.loc[2, "dwell_mean_s"] == pytest.approx((1200 + 2400) / 2)  # i-j and k-l


def test_recency_and_never_fill(X):
    assert X.loc[1, "hours_since_last_event"] == pytest.approx(1 / 3)      # g at 11:40
    assert X.loc[1, "hours_since_last_cart"] == pytest.approx(1 / 3)
    assert X.loc[1, "hours_since_last_purchase"] == pytest.approx(15 + 50 / 60)  # e
    assert X.loc[1, "hours_since_first_event"] == pytest.approx(4 * 24 + 2)
    assert X.loc[1, ["has_cart", "has_purchase"]].tolist() == [1, 1]
    assert X.loc[2, "hours_since_last_event"] == pytest.approx(4.5)
    assert X.loc[2, "hours_since_last_cart"] == pytest.approx(5 + 40 / 60)
    # Never purchased: the documented cap, flagged by has_purchase = 0.
    assert X.loc[2, "hours_since_last_purchase"] == RECENCY_CAP_HOURS
    assert X.loc[2, "has_purchase"] == 0


def test_recency_is_capped():
    rows = [("x", 5, "2023-10-01 00:00:00", "cart", 1, 1, 1.0)]
    X = features_at(frame(rows), T)
    assert X.loc[5, "hours_since_last_event"] == RECENCY_CAP_HOURS
    assert X.loc[5, "hours_since_last_cart"] == RECENCY_CAP_HOURS
    assert X.loc[5, "has_cart"] == 1


def test_conversion_ratios(X):
    assert X.loc[1, ["cart_per_view", "fav_per_view", "purchase_per_view",
                     "purchase_per_cart"]].tolist() == [0.5, 0, 0.25, 0.5]
    assert X.loc[2, ["cart_per_view", "fav_per_view", "purchase_per_view",
                     "purchase_per_cart"]].tolist() == [1, 1, 0, 0]
    # No views: ratios are 0, not inf/nan.
    only_cart = features_at(frame([("x", 9, "2024-01-10 09:00:00", "cart", 1, 1, 1.0)]), T)
    assert only_cart.loc[9, "cart_per_view"] == 0


def test_open_carts(X):
    # User 1: item 11 carted (c) then bought (e): closed; item 12 carted (g), its purchase
    # h is at T, so before T it is open. User 2: item 10 carted then removed: closed.
    assert X.loc[1, ["n_open_carts", "has_open_cart", "open_cart_value"]].tolist() == [1, 1, 3]
    assert X.loc[2, ["n_open_carts", "has_open_cart", "open_cart_value"]].tolist() == [0, 0, 0]


def test_open_cart_rules_for_ties_and_recarts():
    rows = [("x", 4, "2024-01-09 08:00:00", "cart", 1, 1, 2.0),
            ("y", 4, "2024-01-09 08:00:00", "purchase", 1, 1, 2.0),  # same second: closed
            ("z", 4, "2024-01-09 09:00:00", "cart", 2, 1, 6.0),
            ("w", 4, "2024-01-09 09:10:00", "remove_from_cart", 2, 1, 6.0),
            ("v", 4, "2024-01-09 09:20:00", "cart", 2, 1, 6.0)]  # carted again: open
    X = features_at(frame(rows), T)
    assert X.loc[4, ["n_open_carts", "open_cart_value"]].tolist() == [1, 6]


def test_price_statistics(X):
    assert X.loc[1, ["view_price_mean", "cart_price_mean", "spend"]].tolist() == [5, 5, 7]
    assert X.loc[2, ["view_price_mean", "cart_price_mean", "spend"]].tolist() == [5, 5, 0]
    # Missing prices are ignored, not counted as zero.
    ev = frame()
    ev.loc[1, "price"] = np.nan  # event b
    assert features_at(ev, T).loc[1, "view_price_mean"] == pytest.approx((5 + 5 + 3) / 3)


def test_time_profile(X):
    # User 1: a, b, c at 10:xx and f, g at 11:xx (06-12 block), d, e at 20:xx (18-24);
    # 2024-01-06 is a Saturday: a, b, c are weekend events.
    assert X.loc[1, ["frac_hour_00_06", "frac_hour_06_12", "frac_hour_12_18",
                     "frac_hour_18_24"]].tolist() == pytest.approx([0, 5 / 7, 0, 2 / 7])
    assert X.loc[1, "frac_weekend"] == pytest.approx(3 / 7)
    assert X.loc[2, ["frac_hour_06_12", "frac_weekend"]].tolist() == [1, 0]


def test_item_and_category_popularity(X):
    # Pre-T events: item 10: a d i j k (views a d i); 11: b c e (view b, buy e);
    # 12: f g (view f); 13: l. 5 views, 1 purchase: p0 = 0.2.
    A = CONVERSION_PSEUDO_COUNT
    p0 = 0.2
    conv = {10: (0 + A * p0) / (3 + A), 11: (1 + A * p0) / (1 + A), 12: (A * p0) / (1 + A),
            13: p0}
    n = {10: 5, 11: 3, 12: 2, 13: 1}
    user1_items = [r[4] for r in HAND_LOG[:7]]
    assert X.loc[1, "item_popularity_mean"] == pytest.approx(
        np.mean([np.log1p(n[i]) for i in user1_items]))
    assert X.loc[1, "item_conversion_mean"] == pytest.approx(
        np.mean([conv[i] for i in user1_items]))
    # Categories: 1 has a b c d e i j k (views a b d i, buy e); 2 has f g l (view f).
    cconv = {1: (1 + A * p0) / (4 + A), 2: (A * p0) / (1 + A)}
    user1_cats = [r[5] for r in HAND_LOG[:7]]
    assert X.loc[1, "category_popularity_mean"] == pytest.approx(
        np.mean([np.log1p({1: 8, 2: 3}[c]) for c in user1_cats]))
    assert X.loc[1, "category_conversion_mean"] == pytest.approx(
        np.mean([cconv[c] for c in user1_cats]))


def test_snapshot_labels():
    ev = frame()
    X, y = snapshot(ev, T, "1d")
    assert list(y.index) == list(X.index) == [1, 2]
    # h (purchase exactly at T) is inside [T, T + 1d).
    assert y.tolist() == [1, 0]
    # A purchase exactly at T + horizon is outside the window.
    X, y = snapshot(ev, pd.Timestamp("2024-01-10 11:00", tz="UTC"), "1h")
    assert y.loc[1] == 0
    X, y = snapshot(ev, pd.Timestamp("2024-01-10 11:00", tz="UTC"), pd.Timedelta("61min"))
    assert y.loc[1] == 1


@pytest.mark.parametrize("bad", ["0h", "-1d", "soon"])
def test_bad_horizon(bad):
    with pytest.raises(ValueError, match="horizon"):
        snapshot(frame(), T, bad)


def test_no_events_before_cutoff_gives_empty_frame():
    X = features_at(frame(), "2020-01-01")
    assert X.shape == (0, len(feature_columns(True)))
