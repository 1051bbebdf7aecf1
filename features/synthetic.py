"""Synthetic clickstream with a known generative model and a planted purchase signal.

Used by the tests, the benchmark and as the event-mode demo when no real log is
at hand. Everything is drawn in vectorised NumPy from one ``numpy.random.Generator``,
so a (parameters, seed) pair always gives the same log.

Generative model
----------------
For each user ``u`` (ids ``1..n_users``):

* latent purchase intent ``z_u ~ N(0, 1)`` and activity ``a_u ~ N(0, 1)``;
* sessions: ``N_u ~ Poisson(days * sessions_per_day * exp(0.5 a_u))``; each starts on
  a uniform day at an hour drawn from a diurnal profile
  ``p(h) ∝ 1 + 0.7 cos(2π (h - 20) / 24)`` (busiest around 20:00 UTC), uniform within
  the hour;
* session ``s`` has ``L_s = 1 + Poisson(views_per_session * exp(0.3 a_u))`` views, spaced
  by ``Exp(mean 45 s)`` gaps, all in one category ``c_s`` (``c = floor(C U^2)``, so
  low-numbered categories are popular); the item is ``c_s * I/C + floor((I/C) U^2)``;
  each view becomes a ``fav`` with probability 0.03;
* with probability ``sigmoid(-1.5 + z_u)`` the session ends with a ``cart`` of its last
  viewed item, ``Exp(30 s)`` after that view;
* the planted signal: each cart is later **bought** with probability
  ``sigmoid(-0.3 + 1.2 z_u)`` after a delay ``D ~ Exp(mean purchase_delay_h)`` (a view of
  the item 60 s before the purchase), otherwise **removed** with probability 0.15 after
  ``Exp(mean 6 h)``, otherwise it stays open;
* every item has a fixed price ``LogNormal(3, 1)``; events at or after the end of the
  window are discarded.

So a user's chance to buy in ``[T, T + h)`` rises with recent open carts (pending
purchases arrive with rate ``1 / purchase_delay_h``) and with ``z_u``, which shows in the
history only indirectly (cart rate, past purchases per cart). Recency and open-cart
features capture the first part; the cart and purchase ratios carry the second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.events import EVENT_TYPES, derive_sessions

#: Mean events per user with the default parameters (measured on 20 000 users, seed 0);
#: used to size a log for a target number of events.
EVENTS_PER_USER = 78.1


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def generate_events(n_users: int = 1000, days: int = 9, start="2017-11-25",
                    n_items: int = 20_000, n_categories: int = 200,
                    sessions_per_day: float = 1.2, views_per_session: float = 4.0,
                    purchase_delay_h: float = 18.0, seed: int = 0) -> pd.DataFrame:
    """Draw a canonical event table from the model in the module docstring.

    Returns
    -------
    DataFrame sorted by (user_id, timestamp) with columns user_id (int64), timestamp
    (UTC), event_type (categorical), session_id (int64, 30-min inactivity sessions),
    item_id, category (int64) and price (float64). ``df.attrs["intent"]`` holds the
    latent ``z_u`` (index ``u - 1``) for checks of the planted signal.
    """
    if n_users < 1 or days < 1 or n_categories < 1 or n_items < n_categories:
        raise ValueError("need n_users >= 1, days >= 1 and n_items >= n_categories >= 1")
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").value
    end = t0 + days * 86_400 * 10**9
    z = rng.standard_normal(n_users)
    a = rng.standard_normal(n_users)
    per_cat = n_items // n_categories
    price_of_item = np.round(rng.lognormal(3.0, 1.0, n_categories * per_cat), 2)

    # Sessions.
    n_sess = rng.poisson(days * sessions_per_day * np.exp(0.5 * a))
    s_user = np.repeat(np.arange(n_users), n_sess)
    S = len(s_user)
    hours = np.arange(24)
    p_hour = 1 + 0.7 * np.cos(2 * np.pi * (hours - 20) / 24)
    s_start_s = (rng.integers(0, days, S) * 86_400 + rng.choice(hours, S, p=p_hour / p_hour.sum())
                 * 3600 + rng.uniform(0, 3600, S))
    s_len = 1 + rng.poisson(views_per_session * np.exp(0.3 * a[s_user]))
    s_cat = np.floor(n_categories * rng.uniform(size=S) ** 2).astype(np.int64)

    # Views (and favs) inside sessions.
    ev_s = np.repeat(np.arange(S), s_len)
    first = np.cumsum(s_len) - s_len  # index of each session's first view
    gaps = rng.exponential(45.0, len(ev_s))
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    v_time = s_start_s[ev_s] + csum - csum[first][ev_s]
    v_item = s_cat[ev_s] * per_cat + np.floor(per_cat * rng.uniform(size=len(ev_s)) ** 2
                                              ).astype(np.int64)
    v_type = np.where(rng.uniform(size=len(ev_s)) < 0.03, EVENT_TYPES.index("fav"), 0)
    v_user = s_user[ev_s]

    # Carts at the end of some sessions, and their later fate.
    carted = np.flatnonzero(rng.uniform(size=S) < _sigmoid(-1.5 + z[s_user]))
    last = first[carted] + s_len[carted] - 1
    c_user, c_item = s_user[carted], v_item[last]
    c_time = v_time[last] + rng.exponential(30.0, len(carted))
    u01 = rng.uniform(size=len(carted))
    bought = u01 < _sigmoid(-0.3 + 1.2 * z[c_user])
    removed = ~bought & (u01 > 1 - 0.15)
    b_time = c_time[bought] + rng.exponential(purchase_delay_h * 3600, bought.sum())
    r_time = c_time[removed] + rng.exponential(6 * 3600, removed.sum())

    parts = [  # (user, time in s, item, type code)
        (v_user, v_time, v_item, v_type),
        (c_user, c_time, c_item, np.full(len(c_user), EVENT_TYPES.index("cart"))),
        (c_user[bought], b_time - 60.0, c_item[bought], np.zeros(bought.sum(), np.int64)),
        (c_user[bought], b_time, c_item[bought],
         np.full(bought.sum(), EVENT_TYPES.index("purchase"))),
        (c_user[removed], r_time, c_item[removed],
         np.full(removed.sum(), EVENT_TYPES.index("remove_from_cart"))),
    ]
    user = np.concatenate([p[0] for p in parts]) + 1
    # Millisecond resolution, so a CSV round trip (microseconds) is exact.
    t_ns = t0 + np.round(np.concatenate([p[1] for p in parts]) * 1e3).astype(np.int64) * 10**6
    item = np.concatenate([p[2] for p in parts])
    typ = np.concatenate([p[3] for p in parts]).astype(np.int8)
    keep = t_ns < end
    user, t_ns, item, typ = user[keep], t_ns[keep], item[keep], typ[keep]
    order = np.lexsort((t_ns, user))
    user, t_ns, item, typ = user[order], t_ns[order], item[order], typ[order]
    df = pd.DataFrame({
        "user_id": user,
        "timestamp": pd.to_datetime(t_ns, utc=True).as_unit("ns"),
        "event_type": pd.Categorical.from_codes(typ, categories=EVENT_TYPES),
        "session_id": derive_sessions(user, t_ns),
        "item_id": item,
        "category": item // per_cat,
        "price": price_of_item[item],
    })
    df.attrs["intent"] = z.tolist()
    return df


def write_canonical_csv(events: pd.DataFrame, path) -> None:
    """Write a canonical event table as a CSV ``read_events(path, "canonical")`` reads back."""
    from nn_core.io import atomic_write

    out = events.drop(columns=[c for c in events.columns if c not in
                               ("user_id", "timestamp", "event_type", "session_id",
                                "item_id", "category", "price")])
    out = out.assign(timestamp=out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    atomic_write(path, out.to_csv(index=False))
