"""features/online.py: request rows parsed as predict.py parses a CSV, and the online per-user
state equal to features_at bit for bit (any arrival order, given or derived sessions)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from events_common import HAND_LOG, T, frame
from serve_harness import UCI, event_records, typed

from features.events import features_at
from features.online import (
    OnlineState,
    RequestError,
    StateFull,
    events_frame,
    loads,
    rows_frame,
)
from features.scoring import scoring_schema
from features.synthetic import generate_events
from features.tabular import (
    UCI_CATEGORICAL,
    UCI_NUMERIC,
    DataError,
    Preprocessor,
    Schema,
    load_table,
    parse_frame,
)


@pytest.fixture(scope="module")
def pre():
    return Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(
        load_table(UCI, Schema.uci()).iloc[::40])


@pytest.fixture(scope="module")
def csv_rows():
    """Ten UCI rows as the CSV's text cells."""
    return pd.read_csv(UCI, dtype=str, keep_default_na=False).iloc[5::997].to_dict("records")


def test_rows_parse_as_the_csv_does(pre, csv_rows, tmp_path):
    path = tmp_path / "rows.csv"
    pd.DataFrame(csv_rows).to_csv(path, index=False)
    expected = pre.transform(load_table(path, Schema.uci(), with_target=False))
    for rows in (csv_rows, [typed(r) for r in csv_rows]):
        np.testing.assert_array_equal(pre.transform(rows_frame(rows, pre)), expected)


@pytest.mark.parametrize(("edit", "message"), [
    ({"BounceRates": "abc"}, "row 2, column 'BounceRates': not a number (value: 'abc')"),
    ({"BounceRates": None}, "row 2, column 'BounceRates': missing value"),
    ({"ExitRates": -0.5}, "row 2, column 'ExitRates': value below the allowed minimum 0"),
    ({"Administrative": float("inf")}, "row 2, column 'Administrative': infinite value"),
    ({"Month": ["Nov"]}, "row 2, column 'Month': expected a number or a string, got a JSON "
                         "array"),
    ({"Region": {"a": 1}}, "row 2, column 'Region': expected a number or a string, got a "
                           "JSON object"),
])
def test_bad_cells_name_row_and_column(pre, csv_rows, edit, message):
    rows = [dict(r) for r in csv_rows[:3]]
    rows[1].update(edit)
    with pytest.raises(RequestError) as info:
        rows_frame(rows, pre)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.row == 2 and info.value.column == next(iter(edit))


@pytest.mark.parametrize(("value", "text"), [
    # an integer beyond float range (json.loads gives it whole)
    pytest.param(10**400, "1" + "0" * 400, id="10**400"),
    pytest.param(-(10**400), "-1" + "0" * 400, id="-10**400"),
    (float("inf"), "Infinity"),  # JSON's tokens, which Python's parser accepts
    (float("-inf"), "-Infinity"),
    (float("nan"), "NaN"),
    (True, "TRUE"),  # a boolean where a number belongs
    pytest.param("7" * 10_000, "7" * 10_000, id="10000-characters"),
])
def test_json_values_get_the_csv_rule(pre, csv_rows, value, text):
    """A JSON value that no float holds (it raised OverflowError, a 500, and left the
    other requests of its batch unanswered) is refused with the CSV parser's message for the
    same cell text, naming row and column and quoting at most 60 characters of the value."""
    rows = [dict(r) for r in csv_rows[:3]]
    rows[0]["Administrative"] = value
    assert_the_csv_message(pre, csv_rows, rows, text)


def assert_the_csv_message(pre, csv_rows, rows, text):
    """``rows`` (``csv_rows[:3]``, row 1's Administrative changed) is refused with the CSV
    parser's message for that cell written as ``text``."""
    with pytest.raises(RequestError) as info:
        rows_frame(rows, pre)
    raw = pd.DataFrame(csv_rows[:3]).assign(Administrative=[text, "0", "0"])
    with pytest.raises(DataError) as csv:
        parse_frame(raw, scoring_schema(pre), "f.csv", with_target=False)
    assert csv.value.row == 1 and csv.value.column == "Administrative"
    assert str(info.value).startswith(f"row 1, column 'Administrative': {csv.value.problem} "
                                      f"(value: {text[:60]!r}"), str(info.value)
    assert len(str(info.value)) < 200 and info.value.row == 1
    if len(text) > 60:
        assert str(info.value).endswith(f"... ({len(text):,} characters))")


@pytest.mark.parametrize("token", ["1e400", "-2.5E+999", "1" + "0" * 400 + ".5"])
def test_json_floats_beyond_float_range_get_the_csv_rule(pre, csv_rows, token):
    """A JSON number token with a fraction or exponent that no float holds, in a request
    body read by ``loads``, is refused with the CSV parser's message for the token's text
    (``json.loads`` made it an infinity: "infinite value (value: 'Infinity')")."""
    rows = [dict(r) for r in csv_rows[:3]]
    rows[0]["Administrative"] = "@"
    body = json.dumps({"rows": rows}).replace('"@"', token, 1).encode()
    assert_the_csv_message(pre, csv_rows, loads(body)["rows"], token)


def test_loads_keeps_the_floats_a_float_holds():
    body = '[0.5, -1e-400, 1.7976931348623157e308, 7, NaN, -Infinity, "1e400"]'
    values = loads(body)
    assert values[:4] == [0.5, -0.0, 1.7976931348623157e308, 7]
    assert [type(v) for v in values] == [float, float, float, int, float, float, str]
    assert np.isnan(values[4]) and values[5] == float("-inf")


def test_large_finite_json_numbers_are_numbers(pre, csv_rows):
    """An integer above 2**63 but within float range, in a column of JSON numbers, is the
    float it rounds to (as the CSV parser reads its text)."""
    rows = [dict(r) for r in csv_rows[:3]]
    for r in rows:
        r["Administrative"] = 2**70
    assert (rows_frame(rows, pre)["Administrative"] == 2.0**70).all()


def test_bad_row_shapes(pre, csv_rows):
    rows = [dict(r) for r in csv_rows[:3]]
    del rows[2]["Month"]
    with pytest.raises(RequestError, match=r"row 3, column 'Month': missing \(the model"):
        rows_frame(rows, pre)
    with pytest.raises(RequestError, match="row 2: expected a JSON object, got list"):
        rows_frame([csv_rows[0], [1, 2]], pre)
    with pytest.raises(RequestError, match="expected a JSON array of rows"):
        rows_frame({"a": 1}, pre)


def test_bad_events_name_event_and_column():
    good = {"user_id": 1, "timestamp": "2024-01-10T10:00:00Z", "event_type": "view"}
    cases = [({"timestamp": "yesterday"}, "event 2, column 'timestamp': unparsable"),
             ({"event_type": "click"}, "event 2, column 'event_type': unknown event type"),
             ({"user_id": None}, "event 2, column 'user_id': missing user_id"),
             ({"price": -1}, "event 2, column 'price': not a number in [0, ")]
    for edit, message in cases:
        with pytest.raises(RequestError) as info:
            events_frame([good, {**good, **edit}])
        assert str(info.value).startswith(message), str(info.value)
    # a session_id given by one event must be given by all (a column, as in a CSV)
    with pytest.raises(RequestError, match="event 1, column 'session_id': missing"):
        events_frame([good, {**good, "session_id": "s1"}])


def test_cutoff_reads_only_earlier_events():
    """At T: the event at exactly T is not read (it is user 1's label in the batch
    snapshot); user 3, whose only event is after T, has no row."""
    log = frame(HAND_LOG)
    state = OnlineState()
    state.add(events_frame(event_records(log, sessions=False)))
    X = features_at(log, T)
    for user in (1, 2):
        row = state.features([user], T)[X.columns]
        np.testing.assert_array_equal(row.to_numpy()[0].view(np.int64),
                                      X.loc[user].to_numpy().view(np.int64))
    assert state.features([3, 99], T).empty
    assert list(state.features([3, 99, 2], T + pd.Timedelta("2h")).index) == [3, 2]
    assert state.features(["1"], T).equals(state.features([1], T).set_axis(["1"]))


def arrival_order(log: pd.DataFrame, seed: int) -> np.ndarray:
    """A random arrival order of the rows of ``log`` in which the events of a user with
    equal timestamps keep their order (the one thing arrival order decides)."""
    rng = np.random.default_rng(seed)
    arrival = np.empty(len(log), dtype=np.int64)
    arrival[rng.permutation(len(log))] = np.arange(len(log))
    u = log["user_id"].to_numpy()
    t = log["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    by_row = np.lexsort((np.arange(len(log)), t, u))  # groups of (user, time), rows in order
    by_arrival = np.lexsort((arrival, t, u))  # the same groups, arrivals in order
    arrival[by_row] = arrival[by_arrival]
    return np.argsort(arrival)


@pytest.mark.parametrize("sessions", [True, False])
def test_out_of_order_arrival_equals_batch_bit_for_bit(sessions):
    log = generate_events(n_users=40, days=4, n_items=60, n_categories=6, seed=5)
    batch = log if sessions else log.drop(columns="session_id")
    records = event_records(log, sessions)
    state = OnlineState()
    order = arrival_order(log, seed=7)
    for part in np.array_split(order, 7):
        state.add(events_frame([records[i] for i in part.tolist()]))
    assert state.n_events == len(log)
    for cutoff in ("2017-11-26T12:00:00Z", "2017-11-28T00:30:00Z", "2017-12-01T00:00:00Z"):
        X = features_at(batch, cutoff)
        online = state.features(X.index, cutoff)[X.columns]
        assert (online.to_numpy().view(np.int64) == X.to_numpy().view(np.int64)).all()
        one_by_one = pd.concat([state.features([u], cutoff) for u in X.index[::5]])
        assert (one_by_one[X.columns].to_numpy().view(np.int64)
                == X.iloc[::5].to_numpy().view(np.int64)).all()


def test_state_limit_refuses_the_whole_batch():
    state = OnlineState(max_events=3)
    events = events_frame(event_records(frame(HAND_LOG), sessions=False))
    with pytest.raises(StateFull, match="limit of 3"):
        state.add(events)
    assert state.n_events == 0 and state.n_users == 0
