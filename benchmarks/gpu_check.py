"""GPU check: the cupy backend against the NumPy reference, then a throughput table.

One script, prepared to run once on a CUDA machine in under 5 minutes:

1. Cross-check (the shared helper ``nn_core.testing.assert_backends_agree``):
   cupy against numpy for every activation, both outputs, float64 (1e-10)
   and float32 (the documented tolerance), with dropout and deeper nets:
   forward, loss, every gradient, weights after one epoch of Adam.
2. A saved GPU-trained model loads, predicts and matches on the CPU.
3. Throughput: one epoch over 1,000,000 synthetic rows, 75 -> 64 -> 64 -> 1
   ReLU, Adam, float32, batch 256, 4,096 and 65,536, cupy against numba
   (numba with every CPU core of the machine); cupy both with its fused
   element-wise kernels (the default) and unfused (``nn_core.fusion.FUSE =
   False``, one kernel per array operation), which shows what fusion gains.

Usage::

    python benchmarks/gpu_check.py [--rows 1000000] [--out FILE]

Exits with status 2 and one line of explanation where CuPy or a CUDA device
is missing, 1 if a cross-check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()

    from nn_core import MLP, activations, fusion, load_model, save_model
    from nn_core.backends import cupy_module
    from nn_core.testing import OPTION_CASES, TOLERANCES, compare_backends

    try:
        cupy = cupy_module()
    except RuntimeError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    props = cupy.cuda.runtime.getDeviceProperties(0)
    import numba

    say(f"# gpu_check  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    say(
        f"# GPU: {props['name'].decode()}, CuPy {cupy.__version__}, "
        f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}"
    )
    say(
        f"# CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"numba {numba.__version__} with {numba.get_num_threads()} threads"
    )
    say()

    # 1. Cross-check.
    say("## cupy against numpy (normwise relative error, worst quantity)")
    say("| case | dtype | worst error | tolerance | ok |")
    say("|---|---|---:|---:|---|")
    cases = [
        {"activation": a, "output": o}
        for a in activations.ACTIVATIONS
        for o in ("sigmoid", "identity")
    ]
    cases += OPTION_CASES
    failures = 0
    for case in cases:
        for dtype in ("float64", "float32"):
            errors = compare_backends("numpy", "cupy", dtype, **case)
            worst = max(errors, key=errors.get)
            ok = errors[worst] <= TOLERANCES[dtype]
            failures += not ok
            say(
                f"| {case} | {dtype} | {errors[worst]:.2e} ({worst}) | {TOLERANCES[dtype]:g} | "
                f"{'yes' if ok else 'NO'} |"
            )
    say()

    # 2. A GPU-trained model is an ordinary model.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 12)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    gpu = MLP(12, (16, 8), backend="cupy")
    gpu.fit(X, y, epochs=3, batch_size=64)
    with tempfile.TemporaryDirectory() as d:
        save_model(d, gpu)
        cpu = load_model(d, backend="numba").network
    diff = float(np.abs(cpu.predict_proba(X) - gpu.predict_proba(X)).max())
    ok = diff < 1e-5
    failures += not ok
    say(
        f"GPU-trained model saved, loaded on the CPU: max |p_cpu - p_gpu| = {diff:.1e} "
        f"({'ok' if ok else 'FAILED'})"
    )
    say()

    # 3. Throughput.
    n = args.rows
    X = rng.normal(size=(n, 75)).astype(np.float32)
    w = rng.normal(size=75) / np.sqrt(75)
    score = np.tanh(X @ w) + 0.5 * X[:, 0] * X[:, 1]
    y = (score > np.quantile(score, 0.85)).astype(np.float32)
    say(f"## throughput: one epoch over {n:,} rows, 75 -> 64 -> 64 -> 1 ReLU, Adam, float32")
    say("| batch | backend | seconds | samples/s | final epoch loss |")
    say("|---:|---|---:|---:|---:|")
    runs = [("numba", "numba", True), ("cupy", "cupy, fused", True),
            ("cupy", "cupy, unfused", False)]
    try:
        for batch in (256, 4096, 65536):
            for backend, label, fuse in runs:
                fusion.FUSE = fuse
                m = MLP(75, (64, 64), backend=backend)
                m.fit(X[: 4 * batch], y[: 4 * batch], epochs=1, batch_size=batch)  # warm-up
                if backend == "cupy":
                    cupy.cuda.Device().synchronize()
                t = time.perf_counter()
                history = m.fit(X, y, epochs=1, batch_size=batch)
                # fit ends with the loss on the host, so the device has finished
                elapsed = time.perf_counter() - t
                say(
                    f"| {batch:,} | {label} | {elapsed:.2f} | {n / elapsed:,.0f} | "
                    f"{history['loss'][-1]:.4f} |"
                )
    finally:
        fusion.FUSE = True
    say()
    say(f"cross-check failures: {failures}")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
