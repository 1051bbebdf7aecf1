"""serve.py under load on loopback, beside predict.py's batch throughput, in one run.

Workload (issue 19, deliver 3): a small UCI model (``tests/helpers/serve_harness.py:
table_model``, or ``--model``) served by ``python serve.py --port 0`` in a subprocess; a
client in this process (asyncio, HTTP/1.1 keep-alive, one connection per worker) sends

* ``--small`` one-row ``POST /predict`` requests over ``--connections`` connections;
* ``--large`` requests of ``--rows`` rows each, over the same connections;
* both again while another connection sends ``POST /reload`` every second (the server
  loads, checks and compiles the model directory again and switches to it).

The rows are UCI rows, cycled, as a JSON client sends them (numbers as JSON numbers,
which the server takes without parsing text; text cells cost more, ``features.online``).
Per phase: requests, wall time, requests/s and rows/s, latency p50 and p99 (send to last
byte of the reply), and failures (a status other than 200, or a broken connection); during
reloads, how many reloads succeeded. Every phase is bounded by ``--max-seconds`` (the
requests sent by then count). The peer, in the same run: ``python predict.py`` on a CSV of
``--batch-rows`` rows (command wall time, start-up included, and rows/s).

The online state of event-log models (in this process, no HTTP): the events of
``--events-log`` (default: the Taobao sample in ../shared/data/events/, when present) added
in time order (as they happened) in requests of 5,000 (``features.online.events_frame``
and ``OnlineState.add``), then every user's features at the log's last hour, one user at a
time (what ``GET /users/ID/propensity`` computes) and all users in one call, beside
``features.events.features_at`` of the whole log (the batch snapshot), whose values they
equal bit for bit (checked here too).

Client and server share the machine: on 2 cores the client's own work is part of what is
measured; the numbers are for comparing runs on one machine.

Usage::

    python benchmarks/bench_serve.py [--small 20000] [--large 1000] [--rows 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from bench_predict_cli import isa, make_csv, run_child  # noqa: E402  (after the path setup)
from bench_train import cpu_name  # noqa: E402
from serve_harness import (  # noqa: E402
    event_records,
    running_server,
    table_model,
    typed,
    uci_rows,
)


class Connection:
    """One HTTP/1.1 keep-alive connection: ``request`` sends and reads one exchange."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(url: str, bodies: list[bytes], n: int, connections: int, max_seconds: float,
               reload_every: float | None = None) -> dict:
    """Send ``n`` requests (bodies cycled) over ``connections`` connections; with
    ``reload_every``, one more connection posts /reload that often meanwhile."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    failures: list[str] = []
    reloads = {"ok": 0, "failed": 0}
    next_request = iter(range(n))
    deadline = time.perf_counter() + max_seconds
    finished = asyncio.Event()

    async def worker() -> None:
        conn = Connection(host, int(port))
        for i in next_request:
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                status, reply = await conn.request("POST", "/predict", bodies[i % len(bodies)])
                if status != 200:
                    failures.append(f"{status}: {reply[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                failures.append(repr(exc))
                conn.close()
            latencies.append(time.perf_counter() - t0)
        conn.close()

    async def reloader() -> None:
        conn = Connection(host, int(port))
        while not finished.is_set():
            status, _ = await conn.request("POST", "/reload")
            reloads["ok" if status == 200 else "failed"] += 1
            try:
                await asyncio.wait_for(finished.wait(), reload_every)
            except TimeoutError:
                pass
        conn.close()

    t0 = time.perf_counter()
    side = asyncio.ensure_future(reloader()) if reload_every else None
    await asyncio.gather(*(worker() for _ in range(connections)))
    wall = time.perf_counter() - t0
    finished.set()
    if side is not None:
        await side
    lat = np.array(latencies) * 1e3
    return {"requests": len(latencies), "wall": wall, "failures": failures, "reloads": reloads,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


def online_state(path: Path) -> list[tuple[str, int, float]]:
    """(what, count, seconds) of the online state's work on an event log, and the batch."""
    import pandas as pd

    from features.events import features_at, read_events
    from features.online import OnlineState, events_frame

    log = read_events(path, "taobao")
    records = event_records(log.sort_values("timestamp", kind="stable"), sessions=False)
    state = OnlineState()
    t0 = time.perf_counter()
    for i in range(0, len(records), 5000):
        state.add(events_frame(records[i : i + 5000]))
    t1 = time.perf_counter()
    cutoff = log["timestamp"].max().floor("h")
    X = features_at(log, cutoff)
    t2 = time.perf_counter()
    one = [state.features([u], cutoff) for u in X.index]
    t3 = time.perf_counter()
    everyone = state.features(X.index, cutoff)
    t4 = time.perf_counter()
    for frame in (everyone, pd.concat(one)):
        if not (frame[X.columns].to_numpy().view(np.int64) == X.to_numpy().view(np.int64)).all():
            sys.exit("online features differ from features_at")
    return [("events added (requests of 5,000)", len(records), t1 - t0),
            ("users' features, one call per user", len(X), t3 - t2),
            ("users' features, all in one call", len(X), t4 - t3),
            ("batch: features_at of the whole log", len(X), t2 - t1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=20_000, help="one-row requests")
    ap.add_argument("--large", type=int, default=1_000, help="large requests")
    ap.add_argument("--rows", type=int, default=1_000, help="rows per large request")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="bound of each phase")
    ap.add_argument("--batch-rows", type=int, default=200_000, help="predict.py peer's rows")
    ap.add_argument("--model", type=Path, help="model directory (default: a small one)")
    ap.add_argument("--events-log", type=Path, default=ROOT.parent / "shared" / "data" /
                    "events" / "taobao_userbehavior_head_sample.csv",
                    help="Taobao-format log for the online-state measurement (skipped if absent)")
    args = ap.parse_args()

    import pandas as pd

    print(f"# bench_serve  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs, {isa()}; Python "
          f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# command: python {' '.join(sys.argv)}")
    rows = [typed(r) for r in uci_rows(step=1)]
    small = [json.dumps({"rows": [r]}).encode() for r in rows[:2000]]
    large = [json.dumps({"rows": [rows[(k * args.rows + j) % len(rows)]
                                  for j in range(args.rows)]}).encode() for k in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or table_model(tmp / "model")
        csv = tmp / "batch.csv"
        make_csv(csv, args.batch_rows)
        wall, _, cpu = run_child([sys.executable, "predict.py", "--model", str(model),
                                  "--input", str(csv), "--output", str(tmp / "out.csv")])
        results = []
        with running_server(model, "--max-rows", str(max(args.rows, 1))) as srv:
            for name, bodies, n, per, reload_every in (
                    ("1-row /predict", small, args.small, 1, None),
                    (f"{args.rows}-row /predict", large, args.large, args.rows, None),
                    ("1-row /predict, /reload every 1 s", small, args.small, 1, 1.0),
                    (f"{args.rows}-row /predict, /reload every 1 s", large, args.large,
                     args.rows, 1.0)):
                r = asyncio.run(load(srv["url"], bodies, n, args.connections, args.max_seconds,
                                     reload_every))
                results.append((name, per, r))
    print(f"\n# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| workload | requests | connections | wall s | requests/s | rows/s | p50 ms "
          "| p99 ms | failed | reloads (ok/failed) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, per, r in results:
        reloads = (f"{r['reloads']['ok']}/{r['reloads']['failed']}"
                   if "reload" in name else "")
        print(f"| {name} | {r['requests']:,} | {args.connections} | {r['wall']:.1f} | "
              f"{r['requests'] / r['wall']:,.0f} | {r['requests'] * per / r['wall']:,.0f} | "
              f"{r['p50']:.1f} | {r['p99']:.1f} | {len(r['failures'])} | {reloads} |")
    print(f"| predict.py --input (batch, {args.batch_rows:,} rows, start-up included) | 1 | "
          f"| {wall:.1f} | | {args.batch_rows / wall:,.0f} | | | 0 | |")
    print(f"\n# predict.py CPU time: {cpu:.1f} s")
    if args.events_log.exists():
        print(f"\n# online state on {args.events_log.name}, in process\n")
        print("| work | count | seconds | per second |")
        print("|---|---:|---:|---:|")
        for what, count, seconds in online_state(args.events_log):
            print(f"| {what} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} |")
    for name, _, r in results:
        if r["failures"]:
            print(f"# {name}: first failures: {r['failures'][:3]}")


if __name__ == "__main__":
    main()
