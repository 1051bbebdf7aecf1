"""Benchmark: event features for ~10 million synthetic events (not a test).

Generates a synthetic log (``features.synthetic``; generation is not timed), then
times ``features_at`` at a cutoff one day before the log's end, and reports events/s
and the process's peak resident memory (``ru_maxrss``, which includes the log itself).

Usage::

    python benchmarks/bench_events.py [--events 10000000] [--repeat 3] [--seed 0]

Targets (issue 4): <= 30 s and <= 4 GB peak memory on a 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.events import features_at
from features.synthetic import EVENTS_PER_USER, generate_events


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _peak_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000_000, help="target number of events")
    p.add_argument("--repeat", type=int, default=3, help="timed runs (best and all are shown)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    # Draw 2 % more users than needed, then keep exactly the first --events rows.
    n_users = max(1, round(1.02 * args.events / EVENTS_PER_USER))
    events = generate_events(n_users=n_users, seed=args.seed).iloc[: args.events]
    gen_s = time.perf_counter() - t0
    cutoff = events["timestamp"].max().floor("D")
    n_before = int((events["timestamp"] < cutoff).sum())
    print(f"generated {len(events):,} events of {events['user_id'].nunique():,} users "
          f"in {gen_s:.1f} s; cutoff {cutoff} ({n_before:,} events before it)")
    print(f"peak RSS after generation: {_peak_rss_gib():.2f} GiB")

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        X = features_at(events, cutoff)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"features_at: X {X.shape}, runs {[round(t, 2) for t in times]} s, best {best:.2f} s")
    print(f"throughput: {len(events) / best:,.0f} events/s (all events scanned), "
          f"{n_before / best:,.0f} pre-cutoff events/s")
    print(f"peak RSS (whole process): {_peak_rss_gib():.2f} GiB")
    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; date {datetime.date.today()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
