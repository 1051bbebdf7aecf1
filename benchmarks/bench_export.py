"""Single-row latency of the exported predictors next to nn_core (numba) and ONNX Runtime.

    python benchmarks/bench_export.py [--hidden 64 --hidden 64,64] [--epochs 5] [--rows 4000]
    python benchmarks/bench_export.py --model-dir runs/latest   # sizes + int8 accuracy cost

For each architecture a model is trained briefly on the bundled UCI table (latency does not
depend on accuracy, but a trained ReLU net has realistic sparsity), exported, and timed:

- ``C float32`` / ``C int8``: the generated predictor compiled with ``gcc -O3 -march=native``
  (and ``-O2``), timed *inside C* over all rows, repeated (clock_gettime around the loop):
  the time per row includes the preprocessing (log1p, code lookup, one-hot rows);
- ``numba``: ``MLP.predict_proba(F[i:i+1])`` per row, features already preprocessed;
- ``onnxruntime``: the same network as an ONNX graph (MatMul/Add/Relu/Sigmoid, built with
  ``onnx.helper`` from the weights), ``session.run`` per row, 1 thread, features
  preprocessed;
- ``python`` / ``python-pure``: the one-file exports' ``predict(x)`` on raw inputs.

Python-side timings include the interpreter's call overhead, which is the point: that is
what a single-row caller pays. Prints a Markdown table (nanoseconds per row, median of
repeats).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "helpers"))

BENCH_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "NAME.h"

/* usage: bench ROWS.bin N_ROWS REPEATS -> prints the median ns per row over 7 runs */
static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const long n = atol(argv[2]), reps = atol(argv[3]);
    float *x = malloc(sizeof(float) * (size_t)(n * NAMEUP_N_INPUTS));
    FILE *f = fopen(argv[1], "rb");
    double runs[7], sink = 0.0;
    long r, i;
    int k;
    if (f == NULL || fread(x, sizeof(float), (size_t)(n * NAMEUP_N_INPUTS), f)
                     != (size_t)(n * NAMEUP_N_INPUTS)) {
        return 1;
    }
    fclose(f);
    for (k = 0; k < 7; ++k) {
        const double t0 = now_ns();
        for (r = 0; r < reps; ++r) {
            for (i = 0; i < n; ++i) {
                sink += (double)NAME_predict(x + i * NAMEUP_N_INPUTS);
            }
        }
        runs[k] = (now_ns() - t0) / (double)(n * reps);
    }
    qsort(runs, 7, sizeof(double), cmp);
    printf("%.1f %g\n", runs[3], sink);
    free(x);
    return 0;
}
"""


def time_c(out: Path, name: str, X: np.ndarray, flags: list[str], cc: str = "gcc") -> float:
    """Median ns per row of NAME_predict over the rows X, timed inside C."""
    (out / f"bench_{name}.c").write_text(BENCH_C.replace("NAMEUP", name.upper())
                                         .replace("NAME", name))
    rows = out / "rows.bin"
    X.astype(np.float32).tofile(rows)
    exe = out / f"bench_{name}_{cc}"
    subprocess.run([cc, "-std=c99", *flags, "-I", str(out), str(out / f"bench_{name}.c"),
                    str(out / f"{name}.c"), "-o", str(exe), "-lm"], check=True)
    reps = max(1, 400_000 // len(X))
    res = subprocess.run([str(exe), str(rows), str(len(X)), str(reps)], check=True,
                         capture_output=True, text=True)
    return float(res.stdout.split()[0])


def time_calls(fn, rows, repeats: int = 5) -> float:
    """Median over repeats of (time for fn(row) over all rows) / rows, in ns."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for row in rows:
            fn(row)
        runs.append((time.perf_counter_ns() - t0) / len(rows))
    return float(np.median(runs))


def onnx_session(params, activation: str):
    """ONNX Runtime session of the MLP (features -> probability), one thread."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    act = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[activation]
    nodes, inits, cur = [], [], "f"
    for layer, (W, b) in enumerate(params):
        inits += [numpy_helper.from_array(W.astype(np.float32), f"W{layer}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{layer}")]
        nodes += [helper.make_node("MatMul", [cur, f"W{layer}"], [f"m{layer}"]),
                  helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"z{layer}"])]
        last = layer == len(params) - 1
        nodes.append(helper.make_node("Sigmoid" if last else act, [f"z{layer}"],
                                      ["p" if last else f"h{layer}"]))
        cur = f"h{layer}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [None, params[0][0].shape[0]])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def bench(hidden: tuple[int, ...], epochs: int, n_rows: int, tmp: Path) -> dict[str, float]:
    from export_helpers import import_file, train_uci_model

    from nn_core import export as ex
    from nn_core import load_model

    model_dir = tmp / f"m{'_'.join(map(str, hidden))}"
    df, test = train_uci_model(model_dir, hidden=hidden, epochs=epochs)
    model, _ = ex.load_model_dir(model_dir)
    out = model_dir / "export"
    calibration = ex.encode_table(model, df.iloc[np.setdiff1d(np.arange(len(df)), test)])
    for fmt, name in (("c", "f32"), ("c-int8", "i8"), ("c-int8-full", "i8full"),
                      ("python", "pnp"), ("python-pure", "ppure")):
        ex.write_all(out, ex.export(model, fmt, name, calibration=calibration)[0])
    rows = test[:n_rows]
    X = ex.encode_table(model, df.iloc[rows])
    predictor = load_model(model_dir)
    F = predictor.features(df.iloc[rows]).astype(np.float32)
    res = {}
    for label, flags in (("O3 -march=native", ["-O3", "-march=native"]), ("O2", ["-O2"])):
        res[f"C float32 (gcc -{label})"] = time_c(out, "f32", X, flags)
        res[f"C int8 (gcc -{label})"] = time_c(out, "i8", X, flags)
        res[f"C int8-full (gcc -{label})"] = time_c(out, "i8full", X, flags)
    mlp = predictor.network
    mlp.predict_proba(F[:1], threads=1)  # compile
    single = [F[i:i + 1] for i in range(len(F))]
    res["nn_core numba predict_proba (1 thread)"] = time_calls(
        lambda f: mlp.predict_proba(f, threads=1), single)
    sess = onnx_session(model.params, model.activation)
    ort_p = np.concatenate([sess.run(None, {"f": f})[0][:, 0] for f in single[:200]])
    assert np.max(np.abs(ort_p - mlp.predict_proba(F[:200]))) < 1e-5  # same network
    res["onnxruntime session.run (1 thread)"] = time_calls(
        lambda f: sess.run(None, {"f": f}), single)
    pnp = import_file(out / "pnp.py", "pnp")
    ppure = import_file(out / "ppure.py", "ppure")
    raw = X.tolist()
    res["exported python predict(x)"] = time_calls(pnp.predict, raw[:1000], 3)
    res["exported python-pure predict(x)"] = time_calls(ppure.predict, raw[:1000], 3)
    return res


def accuracy_and_size(model_dir: Path, tmp: Path, seed: int = 0) -> None:
    """Size report of every format and test-split ROC-AUC of the compiled C predictors.

    The test split is train.py's default one (``stratified_split(y, seed)``, 70/15/15) of
    the bundled UCI table, so pass a model trained by ``train.py`` with that seed.
    """
    from export_helpers import UCI_CSV, build_harness, reference_predict, run_harness

    from features.tabular import Schema, load_table, stratified_split
    from nn_core import export as ex
    from nn_core.metrics import roc_auc

    df = load_table(UCI_CSV, Schema.uci())
    y = df["Revenue"].to_numpy()
    train, _, test = stratified_split(y, seed)
    model, _ = ex.load_model_dir(model_dir)
    calibration = ex.encode_table(model, df.iloc[train])  # c-int8-full's activation ranges
    X = ex.encode_table(model, df.iloc[test])
    ref = reference_predict(model_dir, df.iloc[test])
    print(f"model {model_dir}: hidden {model.widths[:-1]}, test rows {len(test)}")
    for fmt in ex.FORMATS:
        files, report = ex.export(model, fmt, ex.DEFAULT_NAMES[fmt], calibration=calibration)
        ex.write_all(tmp, files)
        print(ex.format_report(report))
    p32 = run_harness(build_harness(tmp, "model"), X)
    p8 = run_harness(build_harness(tmp, "model_int8"), X)
    p8full = run_harness(build_harness(tmp, "model_int8_full"), X)
    a_ref, a32, a8 = roc_auc(y[test], ref), roc_auc(y[test], p32), roc_auc(y[test], p8)
    print(f"test ROC-AUC: C int8-full {roc_auc(y[test], p8full):.5f} (calibrated on the "
          f"training split), max |C int8-full - predict.py| = "
          f"{np.max(np.abs(p8full - ref)):.2e}")
    print(f"test ROC-AUC: predict.py {a_ref:.5f}, C float32 {a32:.5f}, C int8 {a8:.5f} "
          f"(int8 - float32 = {a8 - a32:+.5f}); max |C float32 - predict.py| = "
          f"{np.max(np.abs(p32 - ref)):.2e}, max |C int8 - predict.py| = "
          f"{np.max(np.abs(p8 - ref)):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", action="append", help="e.g. 64 or 64,64 (repeatable)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=4000, help="test rows timed")
    ap.add_argument("--model-dir", type=Path, help="instead of timing: size report and "
                    "test-split ROC-AUC (float32 vs int8, compiled C) of a train.py model")
    args = ap.parse_args()
    if args.model_dir is not None:
        with tempfile.TemporaryDirectory() as tmp:
            accuracy_and_size(args.model_dir, Path(tmp))
        return
    archs = [tuple(int(h) for h in s.split(",")) for s in (args.hidden or ["64", "64,64"])]
    with tempfile.TemporaryDirectory() as tmp:
        results = {a: bench(a, args.epochs, args.rows, Path(tmp)) for a in archs}
    labels = list(next(iter(results.values())))
    head = " | ".join(f"hidden {','.join(map(str, a))}" for a in archs)
    print(f"| predictor (single row) | {head} |")
    print("|---|" + "---:|" * len(archs))
    for label in labels:
        cells = " | ".join(f"{results[a][label]:,.0f} ns" for a in archs)
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
