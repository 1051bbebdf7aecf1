"""serve.py: the real server in a subprocess on a free loopback port, spoken to over HTTP.

/predict equals predict.py; /events and /users/{id}/propensity equal predict.py --events at
the same cutoff (and the online features equal the batch snapshot bit for bit, replaying the
Taobao sample); /reload under load fails no request and a broken directory keeps the old
model; bad requests get 4xx JSON naming row and column, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from events_common import REAL_EVENTS
from serve_harness import REPO, event_records, events_model, running_server, table_model, uci_rows

httpx = pytest.importorskip("httpx", reason="the serve tests speak HTTP with httpx")
pytest.importorskip("uvicorn", reason="serve.py needs uvicorn (pip install .[serve])")
pytest.importorskip("starlette", reason="serve.py needs starlette (pip install .[serve])")

pytestmark = pytest.mark.slow  # each module starts servers (new interpreters)

TAOBAO = REAL_EVENTS / "taobao_userbehavior_head_sample.csv"


CREATED = "2026-12-01T05:00:00+00:00"


@pytest.fixture(scope="module")
def table_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    model = table_model(tmp / "model")
    # train.py's run directory has the training date in metrics.json
    (model / "metrics.json").write_text(json.dumps({"created": CREATED}))
    latest = point(tmp / "latest", model)  # served as train.py's runs/latest
    with running_server(latest, "--max-rows", "1500", "--max-body-bytes", "3000000") as srv:
        with httpx.Client(base_url=srv["url"], timeout=60) as client:
            yield {**srv, "model": model, "latest": latest, "client": client, "tmp": tmp}


def point(link: Path, target: Path) -> Path:
    """Make ``link`` a symbolic link to ``target``, replaced in one rename (as train.py
    points runs/latest at a new run)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


def no_traceback(response) -> dict:
    assert "Traceback" not in response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_health(table_server):
    r = table_server["client"].get("/health")
    body = no_traceback(r)
    assert r.status_code == 200 and body["status"] == "ok"
    model = body["model"]
    assert model["id"].startswith("sha256:") and model["kind"] == "table"
    assert model["threshold"] == 0.3 and model["format_version"] == 1  # one plain network
    assert model["members"] == 1 and model["path"] == str(table_server["model"].resolve())
    assert model["trained"] == CREATED


def test_predict_equals_predict_py(table_server, tmp_path):
    rows = uci_rows(step=61, start=4)  # 203 rows, most not trained on
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, str(REPO / "predict.py"), "--model",
                           str(table_server["model"]), "--input", str(tmp_path / "in.csv"),
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = pd.read_csv(out)
    r = table_server["client"].post("/predict", json={"rows": rows})
    body = no_traceback(r)
    assert r.status_code == 200
    np.testing.assert_allclose(body["propensity"], expected["propensity"], rtol=0, atol=1e-6)
    assert body["label"] == expected["label"].tolist()
    assert 0 < sum(body["label"]) < len(rows)  # the threshold splits these rows
    one = table_server["client"].post("/predict", json={"rows": rows[7:8]}).json()
    assert abs(one["propensity"][0] - expected["propensity"][7]) <= 1e-6


@pytest.mark.parametrize(("method", "path", "body", "status", "needle"), [
    ("post", "/predict", {"rows": [{"Month": "Feb"}]}, 422,
     "row 1, column 'Administrative': missing"),
    ("post", "/predict", b"{not json", 400, "not JSON"),
    ("post", "/predict", {"row": []}, 400, '{"rows": [...]}'),
    ("post", "/predict", {"rows": [{}] * 1501}, 413, "limit of 1,500 per request"),
    ("post", "/predict", b"[" + b" " * 3_000_001 + b"]", 413, "--max-body-bytes"),
    ("get", "/nowhere", None, 404, "no route /nowhere"),
    ("get", "/predict", None, 405, "Method Not Allowed"),
    ("post", "/events", {"events": []}, 409, "trained on a session table"),
    ("get", "/users/1/propensity", None, 409, "use POST /predict"),
])
def test_bad_requests_get_4xx_json(table_server, method, path, body, status, needle):
    client = table_server["client"]
    if body is None:
        r = client.request(method.upper(), path)
    elif isinstance(body, bytes):
        r = client.request(method.upper(), path, content=body)
    else:
        r = client.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    assert needle in no_traceback(r)["error"]


def test_bad_cell_names_row_and_column(table_server):
    rows = uci_rows(step=1000)[:4]
    rows[2]["BounceRates"] = "lots"
    r = table_server["client"].post("/predict", json={"rows": rows})
    assert r.status_code == 422
    assert no_traceback(r)["error"] == ("row 3, column 'BounceRates': not a number "
                                        "(value: 'lots')")


def test_reload_under_load_fails_no_request(table_server):
    """runs/latest pointed at a new run, then /reload: the scores switch to its weights;
    requests sent meanwhile all succeed, each scored wholly by the old or the new model; a
    broken run keeps the old model serving; SIGHUP reloads too."""
    client, latest, tmp = table_server["client"], table_server["latest"], table_server["tmp"]
    rows = uci_rows(step=500)[:10]
    first = client.post("/predict", json={"rows": rows}).json()
    before, first_id = first["propensity"], first["model"]
    assert client.get("/health").json()["model"]["id"] == first_id
    failures, replies, stop = [], [], threading.Event()

    def hammer():
        with httpx.Client(base_url=table_server["url"], timeout=60) as c:
            while not stop.is_set():
                r = c.post("/predict", json={"rows": rows})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    replies.append(r.json())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        point(latest, table_model(tmp / "model_b", seed=1))  # a new run, other weights
        ids = [client.post("/reload").json()["model"]["id"] for _ in range(3)]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures and len(replies) > 10, (failures[:3], len(replies))
    assert ids[0] != first_id and len(set(ids)) == 1
    assert client.get("/health").json()["model"]["path"] == str((tmp / "model_b").resolve())
    after = client.post("/predict", json={"rows": rows}).json()["propensity"]
    assert not np.allclose(after, before)
    # each reply is wholly the old model's or wholly the new one's, as its id says
    scores = {first_id: before, ids[0]: after}
    assert {r["model"] for r in replies} <= set(scores)
    for r in replies:
        np.testing.assert_allclose(r["propensity"], scores[r["model"]], rtol=0, atol=1e-6)

    broken = table_model(tmp / "broken", seed=2)
    (broken / "model.json").write_text("{broken")
    point(latest, broken)
    r = client.post("/reload")
    assert r.status_code == 409 and f"still serving {ids[0]}" in no_traceback(r)["error"]
    assert "model.json" in r.json()["error"]
    assert client.get("/health").json()["model"]["id"] == ids[0]
    assert client.post("/predict", json={"rows": rows}).json()["propensity"] == after

    point(latest, table_server["model"])  # the first run again, by SIGHUP
    table_server["process"].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while client.get("/health").json()["model"]["id"] != first_id:
        assert time.monotonic() < deadline, table_server["stderr"]
        time.sleep(0.2)
    np.testing.assert_array_equal(client.post("/predict", json={"rows": rows}).json()
                                  ["propensity"], before)


@pytest.fixture(scope="module")
def taobao():
    if not TAOBAO.exists():
        pytest.skip(f"{TAOBAO} is absent (the real event-log samples are not in the repo)")
    from features.events import read_events

    return read_events(TAOBAO, "taobao")


CUTOFFS = ("2017-11-26T06:00:00Z", "2017-11-29T13:00:00Z", "2017-12-03T12:00:00Z")


def replay_equals_batch(log, sessions: bool, cutoffs) -> None:
    """Every event of ``log`` through the online state as it happened (in time order; the
    log's order, by user, only breaks ties), in requests of 5,000; at each cutoff every
    user's online row equals features_at's, bit for bit (all users in one call, and every
    40th one on its own, as GET /users/ID/propensity computes it)."""
    from features.events import features_at
    from features.online import OnlineState, events_frame

    records = event_records(log.sort_values("timestamp", kind="stable"), sessions)
    state = OnlineState()
    for i in range(0, len(records), 5000):
        state.add(events_frame(records[i : i + 5000]))
    for cutoff in cutoffs:
        X = features_at(log, cutoff)
        assert len(X) > 300
        online = state.features(X.index, cutoff)[X.columns]
        assert (online.to_numpy().view(np.int64) == X.to_numpy().view(np.int64)).all()
        one_by_one = pd.concat([state.features([u], cutoff) for u in X.index[::40]])
        assert (one_by_one[X.columns].to_numpy().view(np.int64)
                == X.iloc[::40].to_numpy().view(np.int64)).all()
    assert state.features(X.index, "2000-01-01T00:00:00Z").empty  # before the log


def test_taobao_replay_online_equals_batch_bit_for_bit(taobao):
    """The Taobao sample (sessions derived from the 30-minute gap), three cutoffs."""
    replay_equals_batch(taobao, sessions=False, cutoffs=CUTOFFS)


def test_rees46_replay_online_equals_batch_bit_for_bit():
    """The REES46 sample: the log's own session ids (text) and prices, two cutoffs."""
    path = REAL_EVENTS / "rees46_2019-Oct_head_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent (the real event-log samples are not in the repo)")
    from features.events import read_events

    replay_equals_batch(read_events(path, "rees46"), sessions=True,
                        cutoffs=("2019-10-01T01:00:00Z", "2019-10-01T02:30:00Z"))


def test_events_over_http_score_the_batch_snapshot(taobao, tmp_path):
    """POST /events then GET /users/{id}/propensity?at=T: the score of the user's row of
    features_at(log, T) (what predict.py --events --cutoff T scores), label included."""
    from features.events import features_at
    from nn_core import load_model

    cutoff = CUTOFFS[1]
    model = events_model(tmp_path / "model", features_at(taobao, CUTOFFS[0]))
    predictor = load_model(model)
    log = taobao.iloc[:20_000]  # the first users' events (the log is sorted by user)
    X = features_at(log, cutoff)
    expected = pd.DataFrame({"propensity": predictor.predict_proba(X)}, index=X.index)
    expected["label"] = (expected["propensity"] >= predictor.threshold).astype(int)
    assert 0 < expected["label"].sum() < len(expected)
    records = event_records(log, sessions=False)
    with running_server(model) as srv, httpx.Client(base_url=srv["url"], timeout=60) as client:
        for i in range(0, len(records), 5_000):
            r = client.post("/events", json={"events": records[i : i + 5_000]})
            assert r.status_code == 200, r.text
        assert r.json()["events"] == len(records)
        users = expected.index[:: max(1, len(expected) // 20)]
        for user in users:
            r = client.get(f"/users/{user}/propensity", params={"at": cutoff})
            body = no_traceback(r)
            assert r.status_code == 200, body
            # float32 networks: one row or many in a product, equal within an ulp or two
            assert abs(body["propensity"] - expected.loc[user, "propensity"]) <= 1e-6
            assert body["label"] == expected.loc[user, "label"]
        r = client.get(f"/users/{users[0]}/propensity", params={"at": "2017-11-01"})
        assert r.status_code == 404 and "no events before" in no_traceback(r)["error"]
        r = client.get("/users/1/propensity", params={"at": "soon"})
        assert r.status_code == 422 and "not a time" in no_traceback(r)["error"]
        bad = [dict(records[0]), {**records[1], "event_type": "click"}]
        r = client.post("/events", json={"events": bad})
        assert r.status_code == 422
        assert no_traceback(r)["error"].startswith("event 2, column 'event_type'")
        assert client.get("/health").json()["online"]["events"] == len(records)  # none added
        r = client.post("/predict", json={"rows": []})
        assert r.status_code == 409 and "event log" in json.loads(r.text)["error"]


def test_batched_requests_keep_their_own_rows_and_errors(tmp_path):
    """Requests waiting together are scored in one call and split up again; a bad row in
    one of them sends each back to be scored alone, so each reply names its own row."""
    import asyncio

    from features.serving import Batcher, HTTPError, Served, score_rows

    served = Served(table_model(tmp_path / "model"))
    rows = uci_rows(step=97)[:12]
    alone = [score_rows(served, rows[k : k + 3]) for k in range(0, 12, 3)]

    async def together(requests):
        batcher = Batcher(max_rows=7)  # 3 + 3 rows per call here: two calls for four requests
        return await asyncio.gather(*(batcher.scores(served, r) for r in requests),
                                    return_exceptions=True)

    got = asyncio.run(together([rows[k : k + 3] for k in range(0, 12, 3)]))
    for a, b in zip(got, alone, strict=True):
        np.testing.assert_allclose(a["propensity"], b["propensity"], rtol=0, atol=1e-6)
        assert a["label"] == b["label"]
    bad = [dict(r) for r in rows[3:6]]
    bad[1]["Month"] = None
    got = asyncio.run(together([rows[0:3], bad, rows[6:9]]))
    assert isinstance(got[1], HTTPError) and got[1].status == 422
    assert str(got[1]).startswith("row 2, column 'Month': missing value")
    assert got[0] == alone[0] and got[2] == alone[2]
