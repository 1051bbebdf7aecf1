"""How long the contributors' fast subset (``pytest -m "not slow"``) takes, beside the full suite.

    python benchmarks/bench_fast_subset.py            # the fast subset, then a table
    python benchmarks/bench_fast_subset.py --all      # also the whole suite (what CI runs)
    python benchmarks/bench_fast_subset.py --cores 0,1  # pinned to two cores (taskset)

Each run is one ``python -m pytest -q -p no:cacheprovider`` in a fresh interpreter from the
repository root, with the Numba cache as it is (warm after any earlier run: what a
contributor has). Printed: machine (CPU model, cores allowed), date, each command, its wall
and CPU seconds (the process and its children: the commands some tests start), and the
ratio of the two runs. The goal of issue 16: the fast subset within 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the children, pytest's last line) of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
    return wall, cpu, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also time the whole suite")
    ap.add_argument("--cores", help="run pinned to these cores, e.g. 0,1 (taskset)")
    args = ap.parse_args()
    pin = ["taskset", "-c", args.cores] if args.cores else []
    base = [*pin, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    runs = {'-m "not slow"': [*base, "-m", "not slow"]}
    if args.all:
        runs["everything (CI)"] = base
    allowed = len(os.sched_getaffinity(0)) if not args.cores else len(args.cores.split(","))
    print(f"machine: {cpu_model()}, {allowed} cores allowed; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    rows = []
    for name, command in runs.items():
        print("$", " ".join(command[len(pin):]), flush=True)
        rows.append((name, *timed(command)))
    print(f"\n{'tests':<18}{'wall s':>9}{'CPU s':>9}  pytest")
    for name, wall, cpu, last in rows:
        print(f"{name:<18}{wall:9.1f}{cpu:9.1f}  {last}")
    if len(rows) == 2:
        print(f"fast subset / everything: wall {rows[0][1] / rows[1][1]:.2f}, "
              f"CPU {rows[0][2] / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
