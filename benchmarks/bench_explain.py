"""What ``predict.py --explain K`` costs, and how many quadrature nodes its rows need.

A model is trained by ``train.py --quiet`` (the defaults) on the bundled table; then

* ``python predict.py --no-drift`` and the same with ``--explain 3`` are run alternately
  (``--repeat`` times each) on the bundled table, so that both see the same machine load;
  printed: median wall and CPU time (user + system of the child, every thread) and their
  ratios;
* in-process, ``nn_core.explain.attribute`` on every row of the table: how many rows ended
  with each number of Gauss-Legendre nodes, the rows that missed completeness, and the
  largest completeness error relative to ``|f(x) - f(x')|``.

On a shared machine wall time waits for a CPU; CPU time is the steadier measure.

Usage::

    python benchmarks/bench_explain.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_importance_drift import UCI, pair, timed  # noqa: E402
from bench_train import blas_kernels, cpu_name  # noqa: E402  (the header bench_train prints)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs; BLAS: {blas_kernels()}; load "
          f"{os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed(["train.py", "--quiet", "--output", str(tmp / "run")])
        model = str(tmp / "run")
        out = ["--output", str(tmp / "out.csv"), "--no-drift"]
        base = ["predict.py", "--model", model, "--input", str(UCI), *out]
        pair(f"predict.py, {UCI.name}, --explain 3", base, [*base, "--explain", "3"],
             args.repeat, lambda key, i: (tmp / "out.csv").unlink(missing_ok=True))

        from features.tabular import Schema, load_table
        from nn_core import load_model
        from nn_core.explain import attribute

        predictor = load_model(model, backend="numpy")
        frame = load_table(UCI, Schema.uci(), with_target=False)
        e = attribute(predictor, predictor.features(frame))
        net = predictor.network
        steps, counts = np.unique(e.steps, return_counts=True)
        delta = np.abs(e.value - e.baseline_value)
        print(f"network {net.n_inputs}-{'-'.join(map(str, net.hidden))}-1 {net.activation}, "
              f"{len(e.value):,} rows, baseline: {e.baseline} (f = {e.baseline_value:.4f})")
        print("rows per final node count: "
              + ", ".join(f"{s}: {c:,}" for s, c in zip(steps.tolist(), counts.tolist(),
                                                         strict=True))
              + f"; missed completeness: {int(e.failed.sum())}; largest error / |f(x) - f(x')| "
              f"where |f(x) - f(x')| > 0.01: "
              f"{(e.error / np.maximum(delta, 1e-300))[delta > 0.01].max():.2e}")
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
