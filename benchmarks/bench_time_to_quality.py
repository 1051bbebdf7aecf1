"""Time to quality: how long each implementation trains to reach PyTorch's 10-epoch loss.

    python benchmarks/bench_time_to_quality.py [--max-epochs 60] [--repeats 3] [--batch 32 256]
    python benchmarks/bench_time_to_quality.py --study [--batch 256]

Samples per second are not the whole story: an implementation that runs
epochs fast but needs more of them to learn may lose on the time to a given
loss. Same workload as ``bench_train.py`` (12,330 x 75 float32 rows, 75 -> 64 ->
64 -> 1 ReLU, Adam lr 1e-3, 2 threads), at batch 32 and 256.

The target is PyTorch's training log-loss on the full data after 10 epochs
(``bench_train.py``'s PyTorch run, seed 0). Every implementation then trains
one epoch at a time, from its own default initialisation and seed 0, and
after each epoch its log-loss on the full training data is computed; the
training time up to the first epoch at or below the target is reported.
**Evaluation time is excluded** from that time (it is the same prediction for
everyone and not part of training) and reported in its own column. Peers:
nn_core ``numba`` (``MLP.fit(epochs=1)`` per epoch, which continues the
optimizer's state and the epoch row orders exactly as one longer ``fit``),
from its default LeCun normal weights (docs/math.md section 7); the same with
the former default, He normal for the hidden layers and Glorot normal for the
output layer; the same with PyTorch's initialisation (``U(+-1/sqrt(fan_in))``
for weights and biases); PyTorch eager (``Adam(fused=True)``) and scikit-learn
``MLPClassifier.partial_fit`` (one epoch per call). Times are the best of
``--repeats`` runs; the header gives the machine and the load average.

``--study`` times nothing: it counts epochs, which do not depend on the
machine's load, to show why the initialisation matters (docs/math.md section
7). For nn_core's default (LeCun) and former (He/Glorot) initialisation, at
three learning rates and three seeds (the network's and the row orders'), it
prints the initial full-data log-loss and the epochs to the target; then the
full-data log-loss after 10 epochs of networks of 1 to 4 hidden layers of 64,
trained with Adam (lr 1e-3) and with SGD with momentum (lr 1e-2).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import (  # noqa: E402  (same workload and header as bench_train)
    EPOCHS,
    HIDDEN,
    LR,
    THREADS,
    D,
    blas_kernels,
    cpu_name,
    log_loss,
    make_data,
    torch_initialise,
    torch_trainer,
)


class Run:
    """Per-epoch training seconds and full-data log-loss of one implementation."""

    def __init__(self):
        self.train_s: list[float] = []
        self.eval_s: list[float] = []
        self.loss: list[float] = []

    def epoch(self, train, predict, y) -> float:
        t = time.perf_counter()
        train()
        self.train_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        loss = log_loss(y, predict())
        self.eval_s.append(time.perf_counter() - t)
        self.loss.append(loss)
        return loss

    def to_target(self, target: float) -> tuple[int, float, float] | None:
        """(epochs, training seconds, evaluation seconds) to the first loss <= target."""
        for k, loss in enumerate(self.loss):
            if loss <= target:
                return k + 1, sum(self.train_s[: k + 1]), sum(self.eval_s[: k + 1])
        return None


def he_glorot_initialise(m) -> None:
    """Re-draw ``m``'s weights as nn_core did before issue 14 (ReLU network): He normal,
    ``N(0, 2 / fan_in)``, for the hidden layers, Glorot normal, ``N(0, 2 / (fan_in +
    fan_out))``, for the output layer, zero biases; the same draws as the default's."""
    rng = np.random.default_rng(m.seed)
    params = m.params
    for l, (W, b) in enumerate(params):
        fan_in, fan_out = W.shape
        var = 2 / fan_in if l < len(params) - 1 else 2 / (fan_in + fan_out)
        W[...] = rng.normal(0.0, np.sqrt(var), W.shape)
        b[...] = 0


def run_nn_core(X, y, batch, epochs, target, initialise=None) -> Run:
    from nn_core import MLP

    m = MLP(D, HIDDEN, seed=0)
    if initialise is not None:
        initialise(m)
    run = Run()
    for _ in range(epochs):
        loss = run.epoch(
            lambda: m.fit(X, y, epochs=1, batch_size=batch, lr=LR, threads=THREADS),
            lambda: m.predict_proba(X, threads=THREADS), y,
        )
        if loss <= target:
            break
    return run


def run_torch(X, y, batch, epochs, target=-1.0) -> Run:
    _, train, predict = torch_trainer(X, y, batch)
    run = Run()
    for _ in range(epochs):
        if run.epoch(train, predict, y) <= target:
            break
    return run


def run_sklearn(X, y, batch, epochs, target) -> Run:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    clf = MLPClassifier(HIDDEN, solver="adam", learning_rate_init=LR, batch_size=batch,
                        random_state=0)
    run = Run()
    with warnings.catch_warnings(), threadpool_limits(THREADS):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            loss = run.epoch(lambda: clf.partial_fit(X, y, classes=[0.0, 1.0]),
                             lambda: clf.predict_proba(X)[:, 1], y)
            if loss <= target:
                break
    return run


def epochs_to(m, X, y, batch, lr, target, max_epochs) -> tuple[float, int | None]:
    """(initial log-loss, epochs of ``m.fit`` to a full-data log-loss <= target or None)."""
    start = log_loss(y, m.predict_proba(X, threads=THREADS))
    for epoch in range(1, max_epochs + 1):
        m.fit(X, y, epochs=1, batch_size=batch, lr=lr, shuffle_seed=m.seed, threads=THREADS)
        if log_loss(y, m.predict_proba(X, threads=THREADS)) <= target:
            return start, epoch
    return start, None


def study(X, y, batch, max_epochs, seeds=(0, 1, 2)) -> None:
    """Epochs to PyTorch's 10-epoch loss by initialisation and learning rate; loss by depth
    and optimizer."""
    from nn_core import MLP

    inits = {"LeCun (default)": None, "He/Glorot (former)": he_glorot_initialise}
    target = run_torch(X, y, batch, EPOCHS).loss[EPOCHS - 1]
    print(f"\n## batch {batch}: epochs to PyTorch's {EPOCHS}-epoch log-loss {target:.4f}, "
          f"seeds {', '.join(map(str, seeds))}")
    print("| initialisation | lr | initial log-loss | epochs to target | mean |")
    print("|---|---:|---:|---:|---:|")
    for name, initialise in inits.items():
        for lr in (LR / np.sqrt(2), LR, LR * np.sqrt(2)):
            starts, epochs = [], []
            for seed in seeds:
                m = MLP(D, HIDDEN, seed=seed)
                if initialise is not None:
                    initialise(m)
                start, n = epochs_to(m, X, y, batch, lr, target, max_epochs)
                starts.append(start)
                epochs.append(n)
            shown = ", ".join(str(n) if n else f">{max_epochs}" for n in epochs)
            mean = f"{np.mean(epochs):.1f}" if all(epochs) else ""
            print(f"| {name} | {lr:.2e} | {np.mean(starts):.3f} | {shown} | {mean} |")

    optimizers = {"adam": LR, "momentum": 10 * LR}  # SGD's steps scale with the gradient
    print(f"\n## batch {batch}: full-data log-loss after {EPOCHS} epochs, mean of seeds "
          f"{', '.join(map(str, seeds))}")
    print("| hidden layers | " + " | ".join(
        f"{name}, {opt} lr {lr:g}" for opt, lr in optimizers.items() for name in inits) + " |")
    print("|---|" + "---:|" * (len(inits) * len(optimizers)))
    for depth in (1, 2, 3, 4):
        cells = []
        for optimizer, lr in optimizers.items():
            for initialise in inits.values():
                losses = []
                for seed in seeds:
                    m = MLP(D, (64,) * depth, seed=seed)
                    if initialise is not None:
                        initialise(m)
                    m.fit(X, y, epochs=EPOCHS, batch_size=batch, optimizer=optimizer, lr=lr,
                          shuffle_seed=seed, threads=THREADS)
                    losses.append(log_loss(y, m.predict_proba(X, threads=THREADS)))
                cells.append(f"{np.mean(losses):.4f}")
        print(f"| {depth} x 64 | " + " | ".join(cells) + " |")


def best(runs: list[Run], target: float):
    """The fastest run to the target (all runs of one implementation take the same epochs)."""
    results = [r.to_target(target) for r in runs]
    reached = [r for r in results if r is not None]
    return min(reached, key=lambda r: r[1]) if reached else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="batch sizes (default 32 and 256; 256 with --study)")
    ap.add_argument("--study", action="store_true",
                    help="count epochs by initialisation, learning rate and depth instead")
    args = ap.parse_args()

    import numba

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# bench_time_to_quality  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}")
    print(f"# BLAS: {blas_kernels()}")
    X, y = make_data()
    if args.study:
        for batch in args.batch or [256]:
            study(X, y, batch, args.max_epochs)
        return
    from nn_core import MLP

    batches = args.batch or [32, 256]
    for b in batches:  # compile outside timing
        MLP(D, HIDDEN).fit(X[:512], y[:512], epochs=1, batch_size=b, threads=THREADS)
    MLP(D, HIDDEN).predict_proba(X, threads=THREADS)

    for batch in batches:
        reference = run_torch(X, y, batch, EPOCHS)
        target = reference.loss[EPOCHS - 1]
        peers = {
            "nn_core numba": lambda t, b=batch: run_nn_core(X, y, b, args.max_epochs, t),
            "nn_core numba, former He/Glorot init": lambda t, b=batch: run_nn_core(
                X, y, b, args.max_epochs, t, initialise=he_glorot_initialise),
            "nn_core numba, PyTorch's init": lambda t, b=batch: run_nn_core(
                X, y, b, args.max_epochs, t, initialise=torch_initialise),
            "PyTorch eager": lambda t, b=batch: run_torch(X, y, b, args.max_epochs, t),
        }
        try:
            import sklearn  # noqa: F401

            peers["scikit-learn"] = lambda t, b=batch: run_sklearn(X, y, b, args.max_epochs, t)
        except ImportError:
            pass
        print(f"\n## batch {batch}: target = PyTorch's log-loss after {EPOCHS} epochs = "
              f"{target:.4f}")
        print("| implementation | epochs to target | training s to target | x PyTorch's time | "
              "evaluation s (excluded) | log-loss after 10 epochs |")
        print("|---|---:|---:|---:|---:|---:|")
        rows = {}
        for name, peer in peers.items():
            runs = [peer(target) for _ in range(args.repeats)]
            rows[name] = (best(runs, target), runs[0])
        ref = rows["PyTorch eager"][0]
        for name, (res, run) in rows.items():
            at10 = f"{run.loss[EPOCHS - 1]:.4f}" if len(run.loss) >= EPOCHS else "(stopped)"
            if res is None:
                print(f"| {name} | not in {args.max_epochs} (best {min(run.loss):.4f}) | | | "
                      f"| {at10} |")
                continue
            epochs, train_s, eval_s = res
            ratio = f"{train_s / ref[1]:.2f}x" if ref else ""
            print(f"| {name} | {epochs} | {train_s:.3f} | {ratio} | {eval_s:.3f} | {at10} |")
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\n# load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
          f"best of {args.repeats}")


if __name__ == "__main__":
    main()
