"""Time to quality: how long each implementation trains to reach PyTorch's 10-epoch loss.

    python benchmarks/bench_time_to_quality.py [--max-epochs 60] [--repeats 3]

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
nn_core with PyTorch's initialisation (``U(+-1/sqrt(fan_in))`` for weights and
biases), PyTorch eager (``Adam(fused=True)``) and scikit-learn
``MLPClassifier.partial_fit`` (one epoch per call). Times are the best of
``--repeats`` runs; the header gives the machine and the load average.
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
    torch_model,
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


def run_nn_core(X, y, batch, epochs, target, torch_init=False) -> Run:
    from nn_core import MLP

    m = MLP(D, HIDDEN, seed=0)
    if torch_init:
        torch_initialise(m)
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
    import torch

    torch.set_num_threads(THREADS)
    model = torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)

    def train():
        order = torch.randperm(len(X), generator=g)
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(tX[idx])[:, 0], ty[idx]).backward()
            opt.step()

    def predict():
        with torch.inference_mode():
            return torch.sigmoid(model(tX)[:, 0]).numpy()

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


def best(runs: list[Run], target: float):
    """The fastest run to the target (all runs of one implementation take the same epochs)."""
    results = [r.to_target(target) for r in runs]
    reached = [r for r in results if r is not None]
    return min(reached, key=lambda r: r[1]) if reached else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numba

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# bench_time_to_quality  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}")
    print(f"# BLAS: {blas_kernels()}")
    X, y = make_data()
    from nn_core import MLP

    for b in (32, 256):  # compile outside timing
        MLP(D, HIDDEN).fit(X[:512], y[:512], epochs=1, batch_size=b, threads=THREADS)
    MLP(D, HIDDEN).predict_proba(X, threads=THREADS)

    for batch in (32, 256):
        reference = run_torch(X, y, batch, EPOCHS)
        target = reference.loss[EPOCHS - 1]
        peers = {
            "nn_core numba": lambda t, b=batch: run_nn_core(X, y, b, args.max_epochs, t),
            "nn_core numba, PyTorch's init": lambda t, b=batch: run_nn_core(
                X, y, b, args.max_epochs, t, torch_init=True),
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
