"""Benchmark: scoring a large event log from Parquet with the Dask engine (not a test).

Writes synthetic logs (``features.synthetic``, default parameters) to Parquet chunk by
chunk (never the whole log in memory: one row group of ~1 M events per chunk, user ids
continuing across chunks), trains a small event model once (``train.py`` on 10 000 users),
then runs ``predict.py --events LOG.parquet --output scores.parquet`` with each engine in a
fresh process and measures its wall time and the peak of the summed resident memory of the
whole process tree (the command, the Dask scheduler, nannies and workers), sampled every
0.2 s with psutil. Generation and training are not timed.

Usage::

    python benchmarks/bench_dask.py [--events 100000000] [--pandas-events 10000000]
        [--dask-events 10000000] [--dir /tmp/propensity-bench-dask] [--timeout 3600]
        [--scheduler tcp://host:8786]

Goal (issue 20): 100 M events on a 2-core, 24 GiB machine with the Dask engine, peak
memory of all processes <= 6 GiB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_train import cpu_name  # noqa: E402  (the header bench_train prints)

from features.synthetic import EVENTS_PER_USER, generate_events  # noqa: E402

#: Users per generated chunk (about 1 M events, one Parquet row group).
CHUNK_USERS = 12_800


def write_log(path: Path, n_events: int, seed: int = 0) -> int:
    """Write a synthetic canonical log of at least ``n_events`` events to ``path`` (Parquet),
    one chunk of ``CHUNK_USERS`` users at a time; returns the number of events. An
    existing file of that size is reused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        n = pq.ParquetFile(path).metadata.num_rows
        if n >= n_events:
            return n
    tmp = path.with_name(path.name + ".partial")
    n, k, writer = 0, 0, None
    try:
        while n < n_events:
            users = min(CHUNK_USERS, int((n_events - n) / EVENTS_PER_USER) + 1)
            chunk = generate_events(users, seed=seed + k)
            chunk["user_id"] += k * CHUNK_USERS
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            n += len(chunk)
            k += 1
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    return n


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(cmd: list[str], timeout: float, log: Path) -> dict:
    """Run ``cmd`` (its stdout and stderr to ``log``); its wall time, exit status and peak
    process-tree RSS."""
    start = time.perf_counter()
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        fh.write(f"\n(killed after {timeout} s)\n")
    done.set()
    thread.join()
    fh.close()
    out = log.read_text()
    return {"seconds": round(time.perf_counter() - start, 1), "rc": proc.returncode,
            "peak_gib": round(peak[0] / 2**30, 2), "output": out[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000_000, help="Dask engine, large log")
    ap.add_argument("--dask-events", type=int, default=10_000_000,
                    help="Dask engine on the pandas engine's log too (0: skip)")
    ap.add_argument("--pandas-events", type=int, default=10_000_000, help="0: skip")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/propensity-bench-dask"))
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    ap.add_argument("--scheduler", help="an existing Dask cluster (default: LocalCluster)")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    model = args.dir / "model"
    if not (model / "model.json").exists():
        small = args.dir / "train.parquet"
        write_log(small, int(10_000 * EVENTS_PER_USER), seed=10_000)
        subprocess.run([sys.executable, "train.py", "--events", str(small), "--horizon", "1d",
                        "--epochs", "5", "--output", str(model), "--quiet"], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
    runs = []
    plan = [("dask", args.events), ("pandas", args.pandas_events), ("dask", args.dask_events)]
    for engine, n in plan:
        if n <= 0:
            continue
        log = args.dir / f"events_{n}.parquet"
        t = time.perf_counter()
        n_written = write_log(log, n)
        print(f"{log}: {n_written:,} events ({time.perf_counter() - t:.0f} s to write or "
              "find)", flush=True)
        out = args.dir / f"scores_{engine}_{n}.parquet"
        cmd = [sys.executable, "predict.py", "--model", str(model), "--events", str(log),
               "--engine", engine, "--output", str(out), "--no-drift"]
        if engine == "dask" and args.scheduler:
            cmd += ["--scheduler", args.scheduler]
        load = os.getloadavg()
        r = measure(cmd, args.timeout, args.dir / f"predict_{engine}_{n}.log")
        r.update(engine=engine, events=n_written, load_before=[round(x, 1) for x in load],
                 load_after=[round(x, 1) for x in os.getloadavg()])
        runs.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "output"}), flush=True)
        if r["rc"] != 0:
            print(r["output"], flush=True)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{cpu_name()}, {os.cpu_count()} "
              f"cores, Python {platform.python_version()}", "runs": runs}
    (args.dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| engine | events | wall time | peak RSS, all processes | load (1 min) before/after |")
    print("|---|---:|---:|---:|---|")
    for r in runs:
        print(f"| {r['engine']} | {r['events']:,} | {r['seconds']:.0f} s | {r['peak_gib']:.2f} GiB"
              f" | {r['load_before'][0]} / {r['load_after'][0]} |")


if __name__ == "__main__":
    main()
