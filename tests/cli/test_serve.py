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
import socket
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
    ("post", "/predict", {"rows": []}, 422, '"rows" is empty'),
    ("post", "/predict", {"rows": {}}, 422, 'array of rows in "rows"'),
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


#: A bug injected into the server: scoring a frame with Administrative 777 raises.
FAULT = """
import features.serving as serving
scores = serving.Served.scores
def faulty(self, frame):
    if (frame["Administrative"] == 777).any():
        raise RuntimeError("injected fault")
    return scores(self, frame)
serving.Served.scores = faulty
"""


def post_together(url: str, bodies: list) -> list:
    """POST every body to /predict at once (a connection each); the responses in order,
    ``None`` for one that got no answer in 60 s."""
    got = [None] * len(bodies)

    def post(k):
        with httpx.Client(base_url=url, timeout=60) as client:
            got[k] = client.post("/predict", json=bodies[k])

    threads = [threading.Thread(target=post, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return got


def stops_on_sigterm(srv) -> str:
    """SIGTERM the server and assert that it stops (uvicorn answers the requests in flight,
    then ends by the signal); its stderr after it started."""
    srv["process"].terminate()
    assert srv["process"].wait(timeout=60) == -signal.SIGTERM, "".join(srv["stderr"])
    srv["drain"].join(60)
    return "".join(srv["stderr"])


def test_a_bad_request_among_many_leaves_none_unanswered(tmp_path):
    """A JSON integer beyond float range in one of 30 requests sent together: that one gets
    422 naming its row and column, the CSV parser's rule for the cell; every other one its
    scores; SIGTERM then stops the server (it hung: the batch's other requests were never
    answered, and the server waited for them)."""
    rows = uci_rows(step=500)[:5]
    bodies = [{"rows": rows}] * 30
    bodies[7] = {"rows": [rows[1], dict(rows[0], Administrative=10**400)]}
    with running_server(table_model(tmp_path / "model")) as srv:
        got = post_together(srv["url"], bodies)
        assert all(r is not None for r in got), [k for k, r in enumerate(got) if r is None]
        error = no_traceback(got[7])["error"]
        assert got[7].status_code == 422, error
        assert error.startswith("row 2, column 'Administrative': ")
        assert "(value: '1000000000" in error and "(401 characters)" in error
        good = [r for k, r in enumerate(got) if k != 7]
        assert {r.status_code for r in good} == {200}
        for r in good:  # scored in batches of other sizes: equal to rounding
            np.testing.assert_allclose(r.json()["propensity"], good[0].json()["propensity"],
                                       rtol=0, atol=1e-6)
        # a JSON float beyond float range is quoted as sent, as the CSV reader quotes it
        body = json.dumps({"rows": [dict(rows[0], Administrative="@")]}).replace('"@"',
                                                                                  "1e400")
        with httpx.Client(base_url=srv["url"], timeout=60) as client:
            r = client.post("/predict", content=body,
                            headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert no_traceback(r)["error"] == ("row 1, column 'Administrative': value beyond "
                                            "float range (value: '1e400')")
        assert "Traceback" not in stops_on_sigterm(srv)


def test_an_unexpected_error_answers_500_to_its_request_only(tmp_path):
    """A bug raised by one request's rows (injected): that request gets 500, the others sent
    with it their scores, the next request is served, the traceback is logged once, and
    SIGTERM stops the server."""
    rows = uci_rows(step=500)[:5]
    bodies = [{"rows": rows}] * 20
    bodies[5] = {"rows": [dict(rows[0], Administrative=777)]}
    with running_server(table_model(tmp_path / "model"), prelude=FAULT) as srv:
        got = post_together(srv["url"], bodies)
        assert all(r is not None for r in got), [k for k, r in enumerate(got) if r is None]
        assert got[5].status_code == 500
        assert no_traceback(got[5])["error"].startswith("internal error (RuntimeError)")
        good = [r for k, r in enumerate(got) if k != 5]
        assert {r.status_code for r in good} == {200}
        with httpx.Client(base_url=srv["url"], timeout=60) as client:
            r = client.post("/predict", json={"rows": rows})
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["propensity"], good[0].json()["propensity"],
                                   rtol=0, atol=1e-6)
        log = stops_on_sigterm(srv)
    assert log.count("RuntimeError: injected fault") == 1, log


def test_batcher_answers_every_request_whatever_scoring_raises(tmp_path, monkeypatch,
                                                                 caplog):
    """In one batch: a bad row (422), a bug raised by one request (that request only), good
    requests (their scores); a bug raised only by the batch as a whole is logged once and
    every request scored alone."""
    import asyncio

    from features import serving
    from features.serving import Batcher, HTTPError, Served

    served = Served(table_model(tmp_path / "model"))
    rows = uci_rows(step=97)[:12]
    real = serving.score_rows
    alone = [real(served, rows[k : k + 3]) for k in range(0, 12, 3)]

    def faulty(served, rows):
        if any(r["Administrative"] == 777 for r in rows):
            raise RuntimeError("injected fault")
        if len(rows) > limit:
            raise ZeroDivisionError("a batch-only bug")
        return real(served, rows)

    async def together(requests):
        batcher = Batcher(max_rows=100)
        return await asyncio.gather(*(batcher.scores(served, r) for r in requests),
                                    return_exceptions=True)

    monkeypatch.setattr(serving, "score_rows", faulty)
    limit = 100
    bad, bug = [dict(r) for r in rows[3:6]], [dict(r) for r in rows[6:9]]
    bad[1]["Month"] = None
    bug[2]["Administrative"] = 777
    got = asyncio.run(together([rows[0:3], bad, bug, rows[9:12]]))
    assert got[0] == alone[0] and got[3] == alone[3]
    assert isinstance(got[1], HTTPError) and got[1].status == 422
    assert str(got[1]).startswith("row 2, column 'Month': missing value")
    assert isinstance(got[2], RuntimeError)
    assert asyncio.run(together([rows[0:3]])) == [alone[0]]  # the next batch is served

    limit = 3  # the batch raises, each request alone does not
    with caplog.at_level("ERROR", logger="features.serving"):
        got = asyncio.run(together([rows[k : k + 3] for k in range(0, 12, 3)]))
    assert got == alone
    assert [r.exc_info[0] for r in caplog.records] == [ZeroDivisionError]


def test_listen_errors_name_the_address(tmp_path):
    model = table_model(tmp_path / "model")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def serve(*args):
        return subprocess.run([sys.executable, str(REPO / "serve.py"), "--model", str(model),
                               *args], capture_output=True, text=True, env=env, timeout=120)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = serve("--host", "127.0.0.1", "--port", str(port))
    assert r.returncode == 1
    assert r.stderr.startswith(f"serve.py: error: cannot listen on 127.0.0.1:{port}: "), r.stderr
    r = serve("--host", "no-such-host.invalid", "--port", "0")
    assert r.returncode == 1
    assert r.stderr.startswith("serve.py: error: --host 'no-such-host.invalid': "), r.stderr
