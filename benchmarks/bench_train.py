"""Training and prediction speed of nn_core against its peers, side by side in one run.

Workload (issue 2): 12,330 x 75 float32 synthetic rows with a learnable
nonlinear label (fixed seed, about 15 % positives); 75 -> 64 -> 64 -> 1 ReLU;
Adam, lr 1e-3; 10 epochs; 2 threads; batch 32 and 256.

Peers, each run in this same process: scikit-learn ``MLPClassifier`` (same
architecture, adam, same batch, ``max_iter=10, tol=0``), PyTorch eager
(``Adam(fused=True)``, ``torch.set_num_threads(2)``), nn_core's ``numpy``
backend and nn_core's ``numba`` backend. A peer that is not installed is
reported as skipped. Each result also gives the final training log-loss,
so nobody wins by learning less.

Then: single-row ``predict_proba`` latency (median of 10,000 calls) and
1,000,000-row throughput against PyTorch and ONNX Runtime (the same torch
model exported to ONNX), and the Numba compile time, cold (empty cache) and
warm, each in a new process.

Usage::

    python benchmarks/bench_train.py [--repeats 3] [--skip-compile]
    python benchmarks/bench_train.py --predict-only [--repeats 5] [--tables both]
        [--blocks 64,128,256,512]

``--predict-only`` prints only the 1,000,000-row prediction tables (issue 14.3):
nn_core against ONNX Runtime on the same weights, float32 and float64, hidden (64,) and
(64, 32) ReLU, on one thread and on all (the same count on both sides). ``--tables dense``:
random 80-wide inputs, every feature dense (nn_core's BLAS product against ORT's Gemm).
``--tables bundled``: rows of the bundled table's format (10 numeric columns, 7 one-hot
blocks), nn_core's one-hot path (``NumbaBackend.predict_onehot``: the blocks' share of
the first layer as gathered rows of ``W_0``) and its dense path against ORT on the feature
matrix, and nn_core from the raw inputs against ORT on the exported graph of the raw
inputs (``nn_core/export/onnx.py``). ``--blocks`` adds nn_core's speed per rows-per-block
size, dense and one-hot.

Timings are the best of ``--repeats`` runs (the least disturbed by other work).

The header names the CPU (with its family and model numbers: Zen 4 and Zen 5
both call themselves "AMD EPYC") and the OpenBLAS kernel in use, which
decides the speed of every matrix product that goes through NumPy or SciPy
(nn_core's kernels and scikit-learn; PyTorch brings its own). Where
``OPENBLAS_CORETYPE`` forces an older kernel (some sandboxes set ``Haswell``
on AMD CPUs), measure what the CPU would run by itself with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N, D, HIDDEN, EPOCHS, LR, THREADS = 12_330, 75, (64, 64), 10, 1e-3, 2


def make_data(seed: int = 0):
    """Synthetic rows whose label depends nonlinearly on the inputs (about 15 % positive)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=D) / np.sqrt(D)
    score = np.tanh(X @ w) + 0.5 * X[:, 0] * X[:, 1] + 0.3 * np.abs(X[:, 2])
    y = (score > np.quantile(score, 0.85)).astype(np.float32)
    return X, y


def log_loss(y, p) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def best_of(repeats, fn):
    """Run ``fn() -> (seconds, loss)`` several times; keep the fastest run."""
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


# --- peers --------------------------------------------------------------------
def torch_initialise(m) -> None:
    """Re-draw ``m``'s weights and biases as PyTorch's nn.Linear does by default: uniform in
    +-1/sqrt(fan_in), a variance 6x smaller than He's; it shows how much of a loss gap is
    the start."""
    rng = np.random.default_rng(0)
    for W, b in m.params:
        bound = 1 / np.sqrt(W.shape[0])
        W[...] = rng.uniform(-bound, bound, W.shape)
        b[...] = rng.uniform(-bound, bound, b.shape)


def train_nn_core(backend, X, y, batch, torch_init=False):
    from nn_core import MLP

    m = MLP(D, HIDDEN, seed=0, backend=backend)
    if torch_init:
        torch_initialise(m)
    t = time.perf_counter()
    m.fit(X, y, epochs=EPOCHS, batch_size=batch, lr=LR, threads=THREADS)
    return time.perf_counter() - t, log_loss(y, m.predict_proba(X))


def train_sklearn(X, y, batch):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    clf = MLPClassifier(
        HIDDEN,
        solver="adam",
        learning_rate_init=LR,
        batch_size=batch,
        max_iter=EPOCHS,
        tol=0,
        n_iter_no_change=EPOCHS + 1,
        random_state=0,
    )
    with warnings.catch_warnings(), threadpool_limits(THREADS):
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        clf.fit(X, y)
        elapsed = time.perf_counter() - t
    return elapsed, log_loss(y, clf.predict_proba(X)[:, 1])


def torch_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(D, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )


def torch_trainer(X, y, batch):
    """PyTorch's side of the workload: ``(model, train_epoch, predict)``.

    ``train_epoch()`` runs one epoch of Adam mini-batches in a seeded row order;
    ``predict()`` gives the probabilities of every row of ``X``.
    """
    import torch

    torch.set_num_threads(THREADS)
    model = torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)

    def train_epoch():
        order = torch.randperm(len(X), generator=g)
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(tX[idx])[:, 0], ty[idx]).backward()
            opt.step()

    def predict():
        with torch.inference_mode():
            return torch.sigmoid(model(tX)[:, 0]).numpy()

    return model, train_epoch, predict


def train_torch(X, y, batch):
    model, train_epoch, predict = torch_trainer(X, y, batch)
    t = time.perf_counter()
    for _ in range(EPOCHS):
        train_epoch()
    elapsed = time.perf_counter() - t
    return elapsed, log_loss(y, predict()), model


# --- prediction -------------------------------------------------------------------
def median_latency_us(fn, calls=10_000):
    fn()
    times = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter_ns()
        fn()
        times[i] = time.perf_counter_ns() - t
    return float(np.median(times)) / 1e3


def rows_per_second(fn, rows, repeats):
    fn()
    return rows / min(_timed(fn) for _ in range(repeats))


#: The clock of :func:`_timed`: wall time, or with ``--predict-only --clock thread`` the
#: calling thread's CPU time (``time.thread_time``), which a busy machine inflates far less.
#: With one thread both nn_core and ONNX Runtime (no thread pool at intra_op_num_threads=1)
#: compute in the calling thread, so its CPU time is each side's whole work.
CLOCK = time.perf_counter


def _timed(fn):
    t = CLOCK()
    fn()
    return CLOCK() - t


# --- prediction at scale: nn_core against ONNX Runtime, one network and thread count at a time
PREDICT_ROWS, PREDICT_INPUTS = 1_000_000, 80
#: Seconds of rest before each timed prediction. After a run with two or more threads, ONNX
#: Runtime's worker threads spin for about 25-30 ms before they sleep (measured: 0.026 s of
#: CPU in the 0.05 s after a run), so a side timed right after ORT shares a core with them;
#: with 1 M rows (30-50 ms) that cost nn_core's two-thread figures up to a third. The rest
#: is the same before every side, ORT's included, and is not timed.
PAUSE = 0.1


def _timed_alone(fn):
    """:func:`_timed` after :data:`PAUSE` seconds of rest (no other side's threads left busy)."""
    time.sleep(PAUSE)
    return _timed(fn)


def onnx_session(model, threads: int):
    """An ONNX Runtime session of ``model`` (Gemm, Relu, ..., Sigmoid in its dtype), or None.

    Built with ``onnx.helper`` from the weights themselves (no exporter in
    between), on ``threads`` intra-op threads and one inter-op thread.
    """
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    tp = TensorProto.FLOAT if model.dtype == "float32" else TensorProto.DOUBLE
    nodes, weights, h = [], [], "x"
    for l, (W, b) in enumerate(model.params):
        weights += [numpy_helper.from_array(W, f"W{l}"), numpy_helper.from_array(b, f"b{l}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{l}", f"b{l}"], [f"z{l}"]))
        h = f"z{l}"
        if l < len(model.params) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"h{l}"]))
            h = f"h{l}"
    nodes.append(helper.make_node("Sigmoid", [h], ["p"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", tp, ["n", model.n_inputs])],
        [helper.make_tensor_value_info("p", tp, ["n", 1])], weights,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(onnx_model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def predict_table(repeats: int, hiddens, dtypes, thread_counts) -> None:
    """1,000,000-row prediction, nn_core numba against ONNX Runtime on the same weights.

    Default ReLU networks of ``PREDICT_INPUTS`` inputs (the bundled table's
    one-hot width) and each hidden shape; both sides get the same thread
    count; each figure is the best of ``repeats`` (rows/s), the two sides
    timed in alternation so that load on a shared machine hits both alike.
    """
    from nn_core import MLP
    from nn_core.backends import prediction_block

    print(f"## prediction, {PREDICT_ROWS:,} rows x {PREDICT_INPUTS} inputs, best of {repeats} "
          f"(block {prediction_block()} rows)")
    print("| network | dtype | threads | nn_core rows/s | ONNX Runtime rows/s | nn_core / ORT |")
    print("|---|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(1)
    for hidden in hiddens:
        for dtype in dtypes:
            model = MLP(PREDICT_INPUTS, hidden, dtype=dtype, seed=0)
            X = rng.normal(size=(PREDICT_ROWS, PREDICT_INPUTS)).astype(dtype)
            for threads in thread_counts:
                sess = onnx_session(model, threads)
                ours, theirs = [], []
                model.predict_proba(X[:10_000], threads=threads)
                if sess is not None:
                    assert np.allclose(sess.run(None, {"x": X[:1000]})[0][:, 0],
                                       model.predict_proba(X[:1000]), atol=1e-5)
                    sess.run(None, {"x": X[:10_000]})
                for _ in range(repeats):
                    ours.append(_timed_alone(lambda m=model, X=X, k=threads:
                                             m.predict_proba(X, threads=k)))
                    if sess is not None:
                        theirs.append(_timed_alone(lambda s=sess, X=X: s.run(None, {"x": X})))
                a = PREDICT_ROWS / min(ours)
                net = f"{PREDICT_INPUTS}-{'-'.join(map(str, hidden))}-1"
                if sess is None:
                    print(f"| {net} | {dtype} | {threads} | {a:,.0f} | skipped (not installed) | |")
                    continue
                b = PREDICT_ROWS / min(theirs)
                print(f"| {net} | {dtype} | {threads} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |",
                      flush=True)
    print()


def bundled_rows(rows: int, seed: int = 2):
    """The bundled table's rows resampled (seeded) to ``rows`` rows, with its preprocessing.

    Returns ``(pre, U)``: the ``Preprocessor`` fitted on the whole bundled table (10
    numeric columns, 7 categorical ones: 80 features) and the raw inputs ``U`` (rows, 17)
    of the resampled rows (``Preprocessing.inputs``: numbers and category positions).
    """
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, load_table

    table = load_table(ROOT / "data" / "online_shoppers_intention.csv", Schema.uci())
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(table)
    pick = np.random.default_rng(seed).integers(0, len(table), rows)
    return pre, pre.inputs(table.iloc[pick].reset_index(drop=True))


def exported_onnx_session(model, pre, threads: int):
    """ONNX Runtime on the graph ``python -m nn_core.export --format onnx`` writes for
    ``model`` and ``pre`` (raw inputs to probability: log1p, standardisation, one-hot by
    ``Equal``, the layers; float32), or None without ONNX Runtime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from nn_core import save_model
    from nn_core.export.model import load_model_dir
    from nn_core.export.onnx import generate_onnx

    with tempfile.TemporaryDirectory() as tmp:
        save_model(tmp, model, pre)
        files, _ = generate_onnx(load_model_dir(tmp)[0], "bench")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(files["bench.onnx"], so, providers=["CPUExecutionProvider"])


def exported_inputs(pre, U: np.ndarray) -> np.ndarray:
    """The exported graph's raw input ``x`` (float32) of raw inputs ``U``: numbers as they
    are, a category as its code (``nn_core/export/model.py: categorical_codes``)."""
    from nn_core.export.model import categorical_codes

    x = U.astype(np.float32)
    for i, c in enumerate(pre.columns):
        if c["kind"] == "categorical":
            codes = np.array([*categorical_codes(c["categories"])[1], np.nan], np.float32)
            x[:, i] = codes[U[:, i].astype(np.intp)]  # the last position: unseen, no code
    return x


def bundled_table(repeats: int, hiddens, dtypes, thread_counts) -> None:
    """1,000,000 rows of the bundled format: nn_core's one-hot path against ONNX Runtime.

    Two comparisons, every side timed in alternation, best of ``repeats``:

    * the network alone, from its inputs: nn_core's one-hot path from ``(X_d, R)`` (10
      dense features and 7 row indices a row; ``NumbaBackend.predict_onehot``), nn_core on
      the 80-wide feature matrix ``X`` (the dense path), and ONNX Runtime on the same ``X``
      (``onnx_session``: Gemm, Relu, Sigmoid). Each side gets the input it is built for;
      ``X`` itself is not timed (building it costs more than the network);
    * from raw inputs (float32): nn_core's ``predict_inputs`` from ``U`` (the dense
      features computed, then the one-hot path) against ONNX Runtime on the exported
      graph of the same model from the raw inputs ``x`` (log1p, standardisation, one-hot
      and the layers in the graph).
    """
    from nn_core import MLP
    from nn_core.onehot import InputSplit

    pre, U = bundled_rows(PREDICT_ROWS)
    split = InputSplit(pre.columns)
    print(f"## prediction, {PREDICT_ROWS:,} rows of the bundled format ({len(split.dense)} dense "
          f"features, {len(split.start)} one-hot blocks, {split.n_features} features), best of "
          f"{repeats}")
    print("| network | dtype | threads | nn_core one-hot rows/s | nn_core dense rows/s | "
          "ONNX Runtime rows/s | one-hot / ORT | dense / ORT | nn_core from raw rows/s | "
          "ORT exported graph from raw rows/s | raw: nn_core / ORT |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    x_raw = exported_inputs(pre, U)
    for hidden in hiddens:
        for dtype in dtypes:
            model = MLP(split.n_features, hidden, dtype=dtype, seed=0)
            for threads in thread_counts:
                print(_bundled_row(model, pre, split, U, x_raw, threads, repeats), flush=True)
    print()


def _bundled_row(model, pre, split, U, x_raw, threads: int, repeats: int) -> str:
    """One row of :func:`bundled_table`'s table: every side timed in alternation."""
    from nn_core import backends
    from nn_core.onehot import predict_inputs
    from nn_core.preprocessing import features_from_inputs

    Xd, R = split.split(U, model.dtype)
    X = features_from_inputs(pre.columns, U, model.dtype)[0]
    nb = backends.get("numba")
    sess = onnx_session(model, threads)
    raw = exported_onnx_session(model, pre, threads) if model.dtype == "float32" else None
    sides = {
        "onehot": lambda: nb.predict_onehot(model, Xd, split.dense, R, threads),
        "dense": lambda: model.predict_proba(X, threads=threads),
        "from_raw": lambda: predict_inputs(model, split, U, threads),
    }
    if sess is not None:
        sides["ort"] = lambda: sess.run(None, {"x": X})
    if raw is not None:
        sides["ort_raw"] = lambda: raw.run(None, {"x": x_raw})
    want = model.predict_proba(X[:1000])
    assert np.allclose(sides["onehot"]()[:1000], want, atol=1e-5)
    if raw is not None:
        assert np.allclose(raw.run(None, {"x": x_raw[:1000]})[0], want, atol=1e-4)
    best = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            best[name].append(_timed_alone(fn))
    rate = {name: PREDICT_ROWS / min(t) for name, t in best.items()}
    ort = rate.get("ort")
    net = f"{split.n_features}-{'-'.join(map(str, model.hidden))}-1"
    cells = [net, model.dtype, str(threads), f"{rate['onehot']:,.0f}", f"{rate['dense']:,.0f}",
             f"{ort:,.0f}" if ort else "not installed",
             f"{rate['onehot'] / ort:.2f}x" if ort else "",
             f"{rate['dense'] / ort:.2f}x" if ort else "",
             f"{rate['from_raw']:,.0f}",
             f"{rate['ort_raw']:,.0f}" if "ort_raw" in rate else "(float32 only)",
             f"{rate['from_raw'] / rate['ort_raw']:.2f}x" if "ort_raw" in rate else ""]
    return "| " + " | ".join(cells) + " |"


def block_sweep(repeats: int, blocks, hidden, dtype: str, onehot=None) -> None:
    """nn_core's 1 M-row prediction on one thread with each rows-per-block size: the dense
    path on random inputs and, given ``onehot = (split, U)`` (:func:`bundled_rows`), the
    one-hot path on the bundled format.

    ``nn_core/backends.py: _BLOCKS`` holds the size chosen from this table per
    instruction set (one size for both paths).
    """
    from nn_core import MLP, backends

    model = MLP(PREDICT_INPUTS, hidden, dtype=dtype, seed=0)
    X = np.random.default_rng(1).normal(size=(PREDICT_ROWS, PREDICT_INPUTS)).astype(dtype)
    sides = {"dense": lambda: model.predict_proba(X, threads=1)}
    if onehot is not None:
        split, U = onehot
        model_1h = MLP(split.n_features, hidden, dtype=dtype, seed=0)
        Xd, R = split.split(U, dtype)
        nb = backends.get("numba")
        sides["one-hot"] = lambda: nb.predict_onehot(model_1h, Xd, split.dense, R, 1)
    print(f"## block size, {PREDICT_INPUTS}-{'-'.join(map(str, hidden))}-1 {dtype}, one thread, "
          f"best of {repeats}")
    print("| rows per block | " + " | ".join(f"{name} rows/s" for name in sides) + " |")
    print("|---:|" + "---:|" * len(sides))
    own = backends.prediction_block
    chosen = own()
    try:
        for block in blocks:
            backends.prediction_block = lambda b=block: b
            cells = []
            for fn in sides.values():
                fn()
                t = min(_timed(fn) for _ in range(repeats))
                cells.append(f"{PREDICT_ROWS / t:,.0f}")
            print(f"| {block}{' (chosen here)' if block == chosen else ''} | "
                  + " | ".join(cells) + " |", flush=True)
    finally:
        backends.prediction_block = own
    print()


COMPILE_SCRIPT = """
import time; t0 = time.perf_counter()
import numpy as np
from nn_core import MLP
rng = np.random.default_rng(0)
X = rng.normal(size=(512, 75)).astype(np.float32); y = (rng.random(512) < 0.15).astype(np.float32)
m = MLP(75, (64, 64))
m.fit(X, y, epochs=1, batch_size=32)
t1 = time.perf_counter()
m.predict_proba(X[:1]); m.predict_proba(np.repeat(X, 8, axis=0), threads=2)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t0:.3f}")
"""


def compile_times():
    """(cold, warm) seconds from a new process's start to its first trained epoch and to
    its first predictions, with an empty and then a warm Numba cache."""
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for _ in range(2):
            r = subprocess.run(
                [sys.executable, "-c", COMPILE_SCRIPT],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out.append(tuple(float(v) for v in r.stdout.split()))
    return out


def cpu_name() -> str:
    """The CPU's model name with its family and model numbers (from /proc/cpuinfo)."""
    if not Path("/proc/cpuinfo").exists():
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "cpu family", "model") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
        if not line.strip():
            break
    return (
        f"{fields.get('model name', 'unknown CPU')} "
        f"(family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    )


def isa() -> str:
    """The widest vector instruction set LLVM (so Numba) finds on this CPU."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return next((f"{name}" for name in ("avx512f", "avx2", "avx", "sse4.2") if features.get(name)),
                "no AVX")


def blas_kernels() -> str:
    """The OpenBLAS kernels loaded (NumPy's and SciPy's) and any forced core type."""
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS, the one the kernels call)
    from threadpoolctl import threadpool_info

    kinds = sorted(
        {f"{d['internal_api']} {d.get('architecture', '?')}" for d in threadpool_info()
         if d["user_api"] == "blas"}
    )
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return ", ".join(kinds) + (f" (OPENBLAS_CORETYPE={forced} set)" if forced else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--predict-only", action="store_true",
                    help="only the 1 M-row prediction table against ONNX Runtime")
    ap.add_argument("--tables", choices=("dense", "bundled", "both"), default="both",
                    help="with --predict-only: the table on random 80-wide inputs (dense), "
                         "the one of the bundled format (one-hot path, exported graph), or both")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="with --predict-only: time by the wall clock, or by the calling "
                         "thread's CPU time (one thread only; for a loaded machine)")
    ap.add_argument("--blocks", default="",
                    help="with --predict-only: also time these rows-per-block sizes, e.g. "
                         "64,128,256,512,1024")
    args = ap.parse_args()

    import numba

    print(f"# bench_train  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"# {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}"
    )
    target = numba.config.CPU_NAME  # NUMBA_CPU_NAME: the kernels compiled for another CPU
    print(f"# BLAS: {blas_kernels()}; {isa()}"
          + (f"; kernels compiled for NUMBA_CPU_NAME={target}" if target else ""))
    print(f"# load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
          if Path("/proc/loadavg").exists() else "#")
    if args.predict_only:
        try:
            import onnxruntime

            print(f"# ONNX Runtime {onnxruntime.__version__}\n")
        except ImportError:
            print("# ONNX Runtime not installed\n")
        threads = sorted({1, os.cpu_count() or 1})
        if args.clock == "thread":
            global CLOCK
            CLOCK, threads = time.thread_time, [1]
            print("# timed by the calling thread's CPU time (time.thread_time), one thread\n")
        if args.tables in ("dense", "both"):
            predict_table(args.repeats, [(64,), (64, 32)], ["float32", "float64"], threads)
        if args.tables in ("bundled", "both"):
            bundled_table(args.repeats, [(64,), (64, 32)], ["float32", "float64"], threads)
        if args.blocks:
            from nn_core.onehot import InputSplit

            pre, U = bundled_rows(PREDICT_ROWS)
            sizes = [int(b) for b in args.blocks.split(",")]
            for dtype in ("float32", "float64"):
                block_sweep(args.repeats, sizes, (64,), dtype, (InputSplit(pre.columns), U))
        return
    X, y = make_data()
    print(
        f"# data {X.shape} float32, positives {y.mean():.1%}; {HIDDEN} ReLU, Adam lr {LR}, "
        f"{EPOCHS} epochs, {THREADS} threads\n"
    )

    from nn_core import MLP

    MLP(D, HIDDEN).fit(X[:256], y[:256], epochs=1, batch_size=32)  # compile outside timing
    MLP(D, HIDDEN).fit(X[:256], y[:256], epochs=1, batch_size=256)

    torch_trained = None
    for batch in (32, 256):
        results = {}
        results["nn_core numba"] = best_of(
            args.repeats, lambda b=batch: train_nn_core("numba", X, y, b)
        )
        results["nn_core numba, PyTorch's init"] = best_of(
            args.repeats, lambda b=batch: train_nn_core("numba", X, y, b, torch_init=True)
        )
        results["nn_core numpy"] = best_of(1, lambda b=batch: train_nn_core("numpy", X, y, b))
        try:
            results["scikit-learn"] = best_of(args.repeats, lambda b=batch: train_sklearn(X, y, b))
        except ImportError:
            results["scikit-learn"] = None
        try:
            runs = [train_torch(X, y, batch) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r[0])
            results["PyTorch eager"] = best[:2]
            torch_trained = best[2]
        except ImportError:
            results["PyTorch eager"] = None
        ours = results["nn_core numba"][0]
        print(f"## training, batch {batch}")
        print("| implementation | seconds | samples/s | numba speed-up | final train log-loss |")
        print("|---|---:|---:|---:|---:|")
        for name, r in results.items():
            if r is None:
                print(f"| {name} | skipped (not installed) | | | |")
                continue
            sec, loss = r
            speedup = sec / ours
            print(f"| {name} | {sec:.3f} | {EPOCHS * N / sec:,.0f} | {speedup:.1f}x | {loss:.4f} |")
        print()

    # Prediction: the same trained network on every side.
    m = MLP(D, HIDDEN, seed=0)
    m.fit(X, y, epochs=EPOCHS, batch_size=256, lr=LR)
    big = np.random.default_rng(1).normal(size=(1_000_000, D)).astype(np.float32)
    row = np.ascontiguousarray(X[:1])
    pred = {
        "nn_core numba": (
            median_latency_us(lambda: m.predict_proba(row)),
            rows_per_second(lambda: m.predict_proba(big, threads=THREADS), len(big), args.repeats),
        )
    }
    try:
        import torch

        tm = torch_model()
        with torch.no_grad():
            for layer, (W, b) in zip((tm[0], tm[2], tm[4]), m.params, strict=True):
                layer.weight.copy_(torch.from_numpy(W.T.copy()))
                layer.bias.copy_(torch.from_numpy(b))
        tm.eval()
        trow, tbig = torch.from_numpy(row), torch.from_numpy(big)

        def torch_predict(x):
            with torch.inference_mode():
                return torch.sigmoid(tm(x))

        assert np.allclose(
            torch_predict(torch.from_numpy(X[:100])).numpy()[:, 0],
            m.predict_proba(X[:100]),
            atol=1e-5,
        )
        pred["PyTorch eager"] = (
            median_latency_us(lambda: torch_predict(trow)),
            rows_per_second(lambda: torch_predict(tbig), len(big), args.repeats),
        )
        try:
            import onnxruntime as ort

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "mlp.onnx")
                wrapped = torch.nn.Sequential(tm, torch.nn.Sigmoid())
                torch.onnx.export(
                    wrapped,
                    (trow,),
                    path,
                    input_names=["x"],
                    output_names=["p"],
                    dynamic_axes={"x": {0: "n"}},
                    dynamo=False,
                )
                so = ort.SessionOptions()
                so.intra_op_num_threads = THREADS
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            assert np.allclose(
                sess.run(None, {"x": X[:100]})[0][:, 0], m.predict_proba(X[:100]), atol=1e-5
            )
            pred["ONNX Runtime"] = (
                median_latency_us(lambda: sess.run(None, {"x": row})),
                rows_per_second(lambda: sess.run(None, {"x": big}), len(big), args.repeats),
            )
        except ImportError:
            pred["ONNX Runtime"] = None
    except ImportError:
        pred["PyTorch eager"] = pred["ONNX Runtime"] = None
    del torch_trained
    print("## prediction (same weights everywhere)")
    print(
        "| implementation | single row, median of 10,000 (us) | 1,000,000 rows: rows/s | "
        "numba speed-up (1 M rows) |"
    )
    print("|---|---:|---:|---:|")
    ours = pred["nn_core numba"][1]
    for name, r in pred.items():
        if r is None:
            print(f"| {name} | skipped (not installed) | | |")
        else:
            print(f"| {name} | {r[0]:.2f} | {r[1]:,.0f} | {ours / r[1]:.2f}x |")
    print()

    if not args.skip_compile:
        (cold_fit, cold_all), (warm_fit, warm_all) = compile_times()
        print("## Numba compilation, new process (import -> first epoch trained / -> predictions)")
        print("| cache | to first epoch (s) | to first predictions too (s) |")
        print("|---|---:|---:|")
        print(f"| empty (compiles everything) | {cold_fit:.2f} | {cold_all:.2f} |")
        print(f"| warm | {warm_fit:.2f} | {warm_all:.2f} |")


if __name__ == "__main__":
    main()
