"""What the permutation importance adds to train.py and the drift check to predict.py.

Two pairs of commands, run alternately in one process (``--repeat`` times each), so that
both sides of a pair see the same machine load:

* ``python train.py --quiet --importance-repeats 0`` against ``--importance-repeats 5``
  (the default) on the bundled table: the importance's cost in a default run;
* ``python predict.py --no-drift`` against the default (drift counted, ``OUTPUT.drift.json``
  written) on the bundled rows resampled (seeded) to ``--rows`` rows, with a model from the
  first train.py run: the drift check's cost per file.

Printed per command: wall time and CPU time (user + system of the child, every thread),
median over the repeats, and the ratio of each pair's medians. On a shared machine wall
time waits for a CPU; CPU time is the steadier measure.

Usage::

    python benchmarks/bench_importance_drift.py [--repeat 5] [--rows 500000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_train import blas_kernels, cpu_name  # the header bench_train prints

REPO = Path(__file__).resolve().parents[1]
UCI = REPO / "data" / "online_shoppers_intention.csv"


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one command (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def pair(name: str, a: list[str], b: list[str], repeat: int, outputs) -> None:
    """Run ``a`` and ``b`` alternately and print medians and the ratio b / a."""
    runs = {"a": [], "b": []}
    for i in range(repeat):
        for key, args in (("a", a), ("b", b)):
            runs[key].append(timed([arg.format(i=i, key=key) for arg in args]))
            outputs(key, i)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    print(f"{name}: without {med['a'][0]:.2f} s wall / {med['a'][1]:.2f} s CPU, with "
          f"{med['b'][0]:.2f} s / {med['b'][1]:.2f} s; ratio wall {med['b'][0] / med['a'][0]:.3f}"
          f", CPU {med['b'][1] / med['a'][1]:.3f} (median of {repeat})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rows", type=int, default=500_000)
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs; BLAS: {blas_kernels()}; load "
          f"{os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pair("train.py, importance", ["train.py", "--quiet", "--importance-repeats", "0",
                                      "--output", str(tmp / "run{i}{key}")],
             ["train.py", "--quiet", "--output", str(tmp / "run{i}{key}")], args.repeat,
             lambda key, i: None)
        table = pd.read_csv(UCI, dtype=str, keep_default_na=False)
        rows = np.random.default_rng(0).integers(0, len(table), args.rows)
        table.iloc[rows].to_csv(tmp / "big.csv", index=False)
        del table

        def clean(key, i):  # keep the disk use at one output
            for name in ("out.csv", "out.drift.json"):
                (tmp / name).unlink(missing_ok=True)

        model = str(tmp / "run0b")
        pair(f"predict.py, {args.rows:,} rows, drift check",
             ["predict.py", "--model", model, "--input", str(tmp / "big.csv"), "--output",
              str(tmp / "out.csv"), "--no-drift"],
             ["predict.py", "--model", model, "--input", str(tmp / "big.csv"), "--output",
              str(tmp / "out.csv")], args.repeat, clean)
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
