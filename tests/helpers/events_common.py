"""Small hand-made event logs and paths shared by the event tests (this module has no tests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.events import EVENT_TYPES

#: Where the real event-log samples live (never copied into the repo).
REAL_EVENTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "events"

#: The cutoff of the hand-made log: Wednesday 2024-01-10 12:00 UTC.
T = pd.Timestamp("2024-01-10 12:00", tz="UTC")

# (label, user, time, type, item, category, price); label names the event in the tests.
HAND_LOG = [
    ("a", 1, "2024-01-06 10:00:00", "view", 10, 1, 5.0),   # Saturday
    ("b", 1, "2024-01-06 10:01:00", "view", 11, 1, 7.0),
    ("c", 1, "2024-01-06 10:03:00", "cart", 11, 1, 7.0),
    ("d", 1, "2024-01-09 20:00:00", "view", 10, 1, 5.0),
    ("e", 1, "2024-01-09 20:10:00", "purchase", 11, 1, 7.0),
    ("f", 1, "2024-01-10 11:30:00", "view", 12, 2, 3.0),
    ("g", 1, "2024-01-10 11:40:00", "cart", 12, 2, 3.0),
    ("h", 1, "2024-01-10 12:00:00", "purchase", 12, 2, 3.0),  # at T: label, not feature
    ("i", 2, "2024-01-10 06:00:00", "view", 10, 1, 5.0),
    ("j", 2, "2024-01-10 06:20:00", "cart", 10, 1, 5.0),
    ("k", 2, "2024-01-10 06:50:00", "remove_from_cart", 10, 1, 5.0),  # gap exactly 30 min
    ("l", 2, "2024-01-10 07:30:00", "fav", 13, 2, 4.0),   # gap 40 min: new session
    ("m", 3, "2024-01-10 13:00:00", "view", 10, 1, 5.0),  # after T: user 3 not scored
]


def frame(rows=HAND_LOG, price: bool = True) -> pd.DataFrame:
    """Canonical event table (no session_id: sessions are derived) from rows as above."""
    df = pd.DataFrame({
        "user_id": [r[1] for r in rows],
        "timestamp": pd.to_datetime([r[2] for r in rows], utc=True).as_unit("ns"),
        "event_type": pd.Categorical([r[3] for r in rows], categories=EVENT_TYPES),
        "item_id": [r[4] for r in rows],
        "category": [r[5] for r in rows],
        "price": [r[6] for r in rows],
    })
    return df if price else df.drop(columns="price")
