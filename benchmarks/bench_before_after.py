"""nn_core's own speed in two source trees, measured alternately in one run: did a change slow it?

Usage::

    git worktree add /tmp/before <commit>        # the tree to compare against
    python benchmarks/bench_before_after.py /tmp/before . [--rounds 3]

Each round runs one new process per tree (before, then after), each importing
``nn_core`` from its tree (``PYTHONPATH``) and timing, on ``bench_train.py``'s
workload (12,330 x 75 float32 rows, 75 -> 64 -> 64 -> 1 ReLU, Adam, 10 epochs):
training at batch 32 and 256 with 1 and 2 threads (best of 5 fits), predicting
1,000,000 rows (best of 3) and one row (median of 20,000 calls). Alternating the
trees spreads any slow spell of a shared machine over both. The table gives the
best round of each tree and the ratio after / before (above 1: slower).

The first process of each tree also compiles its Numba kernels when its cache
is cold; that round still counts, because every timing inside it is taken after
a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench_train import blas_kernels, cpu_name  # noqa: E402  (the header bench_train prints)

CHILD = r"""
import json, os, sys, time
import numpy as np
import nn_core  # first, from PYTHONPATH: bench_train puts its own tree on sys.path
from nn_core import MLP
assert nn_core.__file__.startswith(os.environ["PYTHONPATH"]), nn_core.__file__
sys.path.insert(0, sys.argv[1])
from bench_train import D, EPOCHS, HIDDEN, LR, make_data
X, y = make_data()
def fit(batch, threads):
    m = MLP(D, HIDDEN, dtype="float32", backend="numba", seed=0)
    t = time.perf_counter()
    m.fit(X, y, epochs=EPOCHS, batch_size=batch, lr=LR, threads=threads)
    return time.perf_counter() - t
out = {}
for batch in (32, 256):
    for threads in (1, 2):
        fit(batch, threads)  # warm-up: compiles on a cold cache
        out[f"train b{batch} t{threads}"] = min(fit(batch, threads) for _ in range(5))
m = MLP(D, HIDDEN, dtype="float32", backend="numba", seed=0)
rows = np.resize(X, (1_000_000, D))
m.predict_proba(rows[:4096])
best = 1e9
for _ in range(3):
    t = time.perf_counter(); m.predict_proba(rows); best = min(best, time.perf_counter() - t)
out["predict 1M rows"] = best
x = X[:1].copy()
for _ in range(1000):
    m.predict_proba(x)
ts = []
for _ in range(20_000):
    t = time.perf_counter(); m.predict_proba(x); ts.append(time.perf_counter() - t)
out["predict 1 row"] = float(np.median(ts))
print(json.dumps(out))
"""


def measure(tree: Path) -> dict[str, float]:
    """One child process importing nn_core from ``tree``: the timings, in seconds."""
    tree = tree.resolve()
    # Run in the tree: ``python -c`` puts the working directory first on sys.path.
    result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)},
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{tree}: the benchmark failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="source tree to compare against")
    ap.add_argument("after", type=Path, help="source tree with the change")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"# {date.today()}, {cpu_name()}, BLAS: {blas_kernels()}")
    print(f"# python {' '.join(sys.argv)}")
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            for key, seconds in measure(getattr(args, name)).items():
                best[name][key] = min(seconds, best[name].get(key, float("inf")))
    print(f"| {'':18s} | {'before':>10s} | {'after':>10s} | after / before |")
    print(f"|{'-' * 20}|{'-' * 11}:|{'-' * 11}:|{'-' * 15}:|")
    for key, before in best["before"].items():
        after = best["after"][key]
        unit, scale = (" µs", 1e6) if key == "predict 1 row" else (" s", 1.0)
        cells = [f"{v * scale:.4g}{unit}" for v in (before, after)]
        print(f"| {key:18s} | {cells[0]:>10s} | {cells[1]:>10s} | {after / before:14.3f} |")


if __name__ == "__main__":
    main()
