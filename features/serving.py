"""The HTTP scoring service: a model directory served for real-time scoring.

``propensity/serve.py`` (``python serve.py``, ``propensity-serve``) runs it on uvicorn;
another ASGI server can run ``create_app(model_dir)`` as well.

An ASGI app (Starlette: ``pip install .[serve]``), :func:`create_app`, with

* ``GET /health``: ``{"status": "ok", "model": {...}}`` (id, path, kind, training date,
  format version, threshold) and the online state's size;
* ``POST /predict`` ``{"rows": [{column: value, ...}, ...]}``: raw session rows as
  ``predict.py`` reads them -> ``{"propensity": [...], "label": [...]}`` (``label`` 1 where
  ``propensity >= threshold``, the threshold saved with the model; ``null`` without one;
  ``model``, the id of the model that scored them); requests that wait together are
  scored in one call (:class:`Batcher`);
* event-log models: ``POST /events`` ``{"events": [{"user_id", "timestamp", "event_type",
  ...}, ...]}`` adds events to the per-user online state (``features.online.OnlineState``),
  and ``GET /users/{user_id}/propensity?at=T`` scores the user from its events before ``T``
  (default: now) with the same features as ``predict.py --events --cutoff T``, bit for bit;
* ``POST /reload`` (and SIGHUP): load the model directory's current content, check it and
  compile its kernels, then switch to it in one assignment; a request holds the model it
  started with, so requests in flight finish on the old one. A failed reload leaves the old
  model serving (the reply says why: status 409 where the directory does not load, 500 for
  anything else).

A bad request gets a 4xx status and ``{"error": "..."}`` naming the row (1-based, in request
order) and column, or the event; a body over ``max_body_bytes`` (``--max-body-bytes``) or
more than ``max_rows`` (``--max-rows``) rows or events is refused with 413. Rows are
checked by the same parser as ``predict.py``'s (``features.online.rows_frame``). A bug of
ours gets 500 (the exception's type; the traceback goes to the log) for the request that
raised it only: every other request, batched with it or not, is answered.

The app has no authentication or TLS: put it behind a proxy that has, before exposing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import sys
from pathlib import Path

from nn_core.io import ModelFileError

DEFAULT_MAX_BODY_BYTES = 64 << 20
DEFAULT_MAX_ROWS = 100_000
#: The most rows /predict scores in one call (``Batcher``): the event loop waits for one
#: call, so a bound on it bounds what every other request waits.
BATCH_ROWS = 10_000
#: The run's metrics.json (train.py) holds the training date; read up to this size.
MAX_METRICS_BYTES = 16 << 20

log = logging.getLogger(__name__)


class HTTPError(Exception):
    """A request that cannot be served: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def model_info(predictor) -> dict:
    """What ``/health`` says of a loaded model: a content id (SHA-256 of what scores: the
    preprocessing, every network's parameters and weight, the logit bias, the calibration
    and the threshold), path, kind, training date (the run's ``metrics.json`` ``created``,
    else ``None``), the model directory's format version (1 for one plain network, 2 for a
    combined model, as ``save_model`` writes them), members and threshold."""
    from nn_core import modeldir

    ensemble = predictor.ensemble
    calibration = None if ensemble.calibration is None else ensemble.calibration.to_dict()
    h = hashlib.sha256(json.dumps([predictor.preprocessing.to_dict(), ensemble.bias,
                                   calibration, predictor.threshold], sort_keys=True).encode())
    for network, weight in ensemble.members:
        h.update(network.theta.tobytes())
        h.update(repr(float(weight)).encode())
    created = None
    metrics = Path(predictor.path) / "metrics.json"
    try:
        if metrics.stat().st_size <= MAX_METRICS_BYTES:
            created = json.loads(metrics.read_text(encoding="utf-8")).get("created")
    except (OSError, ValueError, AttributeError):
        pass  # not a train.py run directory: no date to show
    return {"id": "sha256:" + h.hexdigest()[:16], "path": str(predictor.path),
            "kind": predictor.preprocessing.source.get("kind", "table"),
            "trained": created,
            "format_version": (modeldir.PLAIN_FORMAT_VERSION if ensemble.plain
                               else modeldir.FORMAT_VERSION),
            "members": len(ensemble.members), "threshold": predictor.threshold,
            "n_inputs": predictor.network.n_inputs}


class Served:
    """One loaded model: the ``Predictor`` and its ``/health`` description. Never changed
    after loading; a reload builds a new one."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        from nn_core import load_model

        # Resolved once: with runs/latest, every file comes from the run it points at now,
        # even if train.py points it at a newer run meanwhile.
        self.predictor = load_model(Path(path).resolve(), require_preprocessing=True)
        net = self.predictor.network
        net.predict_proba(np.zeros((1, net.n_inputs), dtype=net.dtype))  # compile here
        self.info = model_info(self.predictor)
        self.kind = self.info["kind"]

    def scores(self, frame) -> dict:
        """``{"propensity", "label", "model"}`` of the rows of a frame (``model``: the id of
        the model that scored them)."""
        p = self.predictor.predict_proba(frame)
        t = self.predictor.threshold
        return {"propensity": p.tolist(),
                "label": None if t is None else (p >= t).astype(int).tolist(),
                "model": self.info["id"]}


def score_rows(served: Served, rows: list) -> dict:
    """``Served.scores`` of JSON rows (``features.online.rows_frame``); HTTPError 422 naming
    row and column of a bad value."""
    from features.online import RequestError, rows_frame

    try:
        return served.scores(rows_frame(rows, served.predictor.preprocessing))
    except RequestError as exc:
        raise HTTPError(422, str(exc)) from None
    except ValueError as exc:  # Predictor.transform: a value whose feature overflows
        raise HTTPError(422, " ".join(str(exc).split())) from None


class Batcher:
    """Adaptive batching of ``/predict``: the rows of the requests that are waiting when the
    event loop gets to them are checked and scored in one call, then split up again.

    A request puts its rows in the queue and waits; the first schedules a run at the loop's
    next turn, so a lone request waits for nothing and requests that arrive together (many
    connections) share the per-call costs of parsing and scoring (pandas' per-column work
    dominates a one-row request). If scoring the batch raises, every request of it is
    scored on its own, so that each reply is its own: a bad row gets a 422 naming its own
    row numbers, an unexpected exception (a bug) reaches only the request that raises it
    (500) and the others are answered. Every request of a batch is answered, whatever the
    batch raised. Requests keep the model they started with: a batch is scored per model.

    Parameters
    ----------
    max_rows : int
        The most rows of one call (a request with more is scored alone).
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.pending: list[tuple[Served, list, asyncio.Future]] = []
        self.scheduled = False

    async def scores(self, served: Served, rows: list) -> dict:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((served, rows, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.run)
        return await future

    def run(self) -> None:
        """Score the requests that wait now (at least one, at most ``max_rows`` rows) and
        answer each; run again at the loop's next turn while requests wait."""
        take, n = 1, len(self.pending[0][1])
        while take < len(self.pending) and n + len(self.pending[take][1]) <= self.max_rows:
            n += len(self.pending[take][1])
            take += 1
        batch, self.pending = self.pending[:take], self.pending[take:]
        if self.pending:
            asyncio.get_running_loop().call_soon(self.run)
        else:
            self.scheduled = False
        for served in {id(s): s for s, _, _ in batch}.values():
            self.answer(served, [(rows, future) for s, rows, future in batch if s is served])

    @staticmethod
    def answer(served: Served, group: list[tuple[list, asyncio.Future]]) -> None:
        """Score the requests of one model in one call and answer each (its future gets its
        scores or an exception); never raises."""
        try:
            out = score_rows(served, [row for rows, _ in group for row in rows])
        except Exception as exc:
            error = exc
        else:
            start = 0
            for rows, future in group:
                span = slice(start, start + len(rows))
                start += len(rows)
                resolve(future, {"propensity": out["propensity"][span],
                                 "label": None if out["label"] is None else out["label"][span],
                                 "model": out["model"]})
            return
        if len(group) == 1:
            resolve(group[0][1], error)
            return
        # each request on its own (outside the except clause: its exception is its own, not
        # chained to the batch's): its own row numbers, or the bug raised by it alone
        bug = False
        for rows, future in group:
            if future.done():  # the client went away
                continue
            try:
                resolve(future, score_rows(served, rows))
            except Exception as exc:
                resolve(future, exc)
                bug |= not isinstance(exc, HTTPError)
        if not bug and not isinstance(error, HTTPError):  # the batch's only: logged here
            log.error("scoring a batch of %d requests raised; no request raises it alone",
                      len(group), exc_info=error)


def resolve(future: asyncio.Future, result: object) -> None:
    """Set a request's result, or its exception when ``result`` is one; nothing when the
    future is done already (the client went away and the request was cancelled)."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


async def read_json(request, limit: int, key: str, max_items: int) -> list:
    """The list under ``key`` of a JSON object body of at most ``limit`` bytes and
    ``max_items`` items (HTTPError 413, or 400 for a body that is not such JSON)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPError(413, f"request body of {int(length):,} bytes exceeds the limit of "
                        f"{limit:,} (--max-body-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, f"request body exceeds the limit of {limit:,} bytes "
                            "(--max-body-bytes)")
    from features.online import loads  # a number beyond float range kept as its text

    try:
        doc = loads(body)
    except ValueError as exc:  # also UnicodeDecodeError
        raise HTTPError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or key not in doc:
        raise HTTPError(400, f'expected a JSON object {{"{key}": [...]}}')
    items = doc[key]
    if isinstance(items, list) and len(items) > max_items:
        raise HTTPError(413, f"{len(items):,} {key} exceed the limit of {max_items:,} per "
                        "request (--max-rows)")
    return items


def create_app(model_dir: Path, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_rows: int = DEFAULT_MAX_ROWS, max_events: int = 10_000_000,
               name: str = "serve.py"):
    """The Starlette app serving ``model_dir`` (loaded now: a bad directory raises here).

    ``max_body_bytes``, ``max_rows`` and ``max_events`` bound a request body, the rows or
    events of a request and the events of the online state; ``name`` starts the lines the
    app prints on stderr (after a SIGHUP reload).
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from features.online import OnlineState, RequestError, StateFull, events_frame

    state = {"model": Served(model_dir)}
    batcher = Batcher(BATCH_ROWS)
    online = OnlineState(max_events=max_events)
    reload_lock = asyncio.Lock()
    reloads: set[asyncio.Task] = set()

    def current(kind: str) -> Served:
        served = state["model"]  # this request keeps it, whatever a reload does meanwhile
        if served.kind != kind:
            other = ("POST /predict" if served.kind == "table"
                     else "POST /events and GET /users/{user_id}/propensity")
            raise HTTPError(409, f"the model {served.info['id']} was trained on "
                            f"{'a session table' if served.kind == 'table' else 'an event log'}"
                            f": use {other}")
        return served

    async def health(request):
        return JSONResponse({"status": "ok", "model": state["model"].info,
                             "online": {"users": online.n_users, "events": online.n_events}})

    async def predict(request):
        served = current("table")
        rows = await read_json(request, max_body_bytes, "rows", max_rows)
        if not isinstance(rows, list):
            raise HTTPError(422, 'expected a JSON array of rows in "rows"')
        if not rows:
            raise HTTPError(422, '"rows" is empty: expected at least one row')
        return JSONResponse(await batcher.scores(served, rows))

    async def add_events(request):
        current("events")
        items = await read_json(request, max_body_bytes, "events", max_rows)
        try:
            added = online.add(events_frame(items))
        except StateFull as exc:
            raise HTTPError(507, str(exc)) from None
        except RequestError as exc:
            raise HTTPError(422, str(exc)) from None
        return JSONResponse({"added": added, "users": online.n_users,
                             "events": online.n_events})

    async def user_propensity(request):
        import pandas as pd

        served = current("events")
        user = request.path_params["user_id"]
        at = request.query_params.get("at")
        try:
            cutoff = pd.Timestamp.now(tz="UTC") if at is None else ev_time(at)
        except ValueError as exc:
            raise HTTPError(422, f"at={at!r}: {exc}") from None
        row = online.features([user], cutoff)
        if not len(row):
            raise HTTPError(404, f"user {user!r} has no events before {cutoff.isoformat()}")
        out = served.scores(row[served.predictor.preprocessing.input_columns])
        return JSONResponse({"user_id": user, "at": cutoff.isoformat(),
                             "propensity": out["propensity"][0],
                             "label": None if out["label"] is None else out["label"][0],
                             "model": served.info["id"]})

    async def do_reload() -> Served:
        async with reload_lock:
            new = await run_in_threadpool(Served, model_dir)  # the loop keeps serving
            state["model"] = new  # one assignment: the switch
            return new

    async def reload(request):
        old = state["model"].info["id"]
        try:
            new = await do_reload()
        except Exception as exc:  # whatever failed, the old model keeps serving
            # a directory that does not load is the caller's to fix (409: the directory's
            # current content conflicts with serving it); anything else is ours (500)
            status = 409 if isinstance(exc, (ModelFileError, OSError)) else 500
            raise HTTPError(status, f"reload of {model_dir} failed, still serving {old}: "
                            f"{' '.join(str(exc).split())}") from None
        return JSONResponse({"status": "reloaded", "previous": old, "model": new.info})

    def on_sighup() -> None:
        async def run() -> None:
            try:
                new = await do_reload()
                print(f"{name}: SIGHUP: serving {new.info['id']}",
                      file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"{name}: SIGHUP: reload failed, still serving "
                      f"{state['model'].info['id']}: {' '.join(str(exc).split())}",
                      file=sys.stderr, flush=True)
        task = asyncio.ensure_future(run())
        reloads.add(task)  # a reference until it is done (the loop keeps weak ones only)
        task.add_done_callback(reloads.discard)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        yield

    async def http_error(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def starlette_error(request, exc):
        detail = exc.detail if exc.status_code != 404 else f"no route {request.url.path}"
        return JSONResponse({"error": detail}, status_code=exc.status_code)

    async def internal_error(request, exc):  # a bug of ours: logged, no traceback sent
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the "
                                      "server log"}, status_code=500)

    routes = [Route("/health", health, methods=["GET"]),
              Route("/predict", predict, methods=["POST"]),
              Route("/events", add_events, methods=["POST"]),
              Route("/users/{user_id}/propensity", user_propensity, methods=["GET"]),
              Route("/reload", reload, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPError: http_error, HTTPException: starlette_error,
                                        Exception: internal_error})
    app.state.current = lambda: state["model"]
    app.state.online = online
    return app


def ev_time(text: str):
    """A time of ``at=``: ISO 8601 (naive = UTC) or unix seconds (ValueError otherwise)."""
    import pandas as pd

    text = text.strip()
    try:
        if text.lstrip("-").isdigit():
            ts = pd.Timestamp(int(text), unit="s", tz="UTC")
        else:
            ts = pd.Timestamp(text)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        if pd.isna(ts):
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise ValueError("not a time between 1677 and 2262 (ISO 8601, e.g. "
                         "2017-12-02T12:00:00Z, or unix seconds)") from None
    return ts.as_unit("ns")
