"""Compiling the prediction kernels ahead in a child process (nn_core/precompile.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nn_core import precompile

ROOT = Path(__file__).resolve().parents[2]

# In a process whose Numba cache (NUMBA_CACHE_DIR) is empty: predict 300 rows with a tanh
# float64 network, after letting a child compile the kernel (argv[1] == "ahead") or not.
# Prints whether the child was started, the kernel's cache hits and misses in this process,
# and the predictions' bytes.
SCRIPT = """
import sys
import numpy as np
from nn_core import MLP, kernels, precompile

blocks = kernels.entry("blocks", kernels.activation_index("tanh"))
started = precompile.start("float64", ["tanh"]) if sys.argv[1] == "ahead" else None
precompile.wait()
cached = precompile.has_kernel(blocks, "float64")
X = np.random.default_rng(0).normal(size=(300, 5))
p = MLP(5, hidden=(4,), activation="tanh", dtype="float64", seed=1).predict_proba(X)
print(started, cached, sum(blocks.stats.cache_hits.values()),
      sum(blocks.stats.cache_misses.values()), p.tobytes().hex())
"""


def _run(mode: str, cache: Path) -> list[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=True)
    return r.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(precompile.usable_cpus() < 2, reason="start() needs two usable CPUs")
def test_child_compiles_the_kernel_this_process_then_loads(tmp_path):
    started, cached, hits, misses, ahead = _run("ahead", tmp_path / "ahead")
    # The child wrote the kernel to the cache; this process loaded it, compiled nothing.
    assert (started, cached, hits, misses) == ("True", "True", "1", "0")
    # The same bits as a kernel compiled in the process itself.
    *_, hits, misses, own = _run("own", tmp_path / "own")
    assert (hits, misses) == ("0", "1")
    assert ahead == own


def test_nothing_started_on_one_cpu(monkeypatch):
    monkeypatch.setattr(precompile, "usable_cpus", lambda: 1)
    monkeypatch.setattr(subprocess, "Popen", None)  # would fail if called
    assert precompile.start("float32", ["relu"]) is False


def test_nothing_started_when_cached(monkeypatch):
    monkeypatch.setattr(precompile, "usable_cpus", lambda: 2)
    monkeypatch.setattr(precompile, "has_kernel", lambda dispatcher, dtype: True)
    monkeypatch.setattr(subprocess, "Popen", None)
    assert precompile.start("float32", ["relu", "tanh"]) is False
    precompile.wait()  # no child: returns at once


@pytest.mark.slow
def test_the_child_and_training_share_two_functions_of_one_signature(tmp_path):
    # Numba's cache has no lock: the child and a run compiling at the same time must not
    # save different signatures of one function. Training's cached functions and the
    # child's may share block_finite and output_loss_delta (see the module).
    # The two they share must have one signature, the same in both.
    def compiled(code: str, cache: Path) -> tuple[set[str], str]:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        shared = ("; from nn_core import kernels; "
                  "print(kernels.block_finite.signatures, kernels.output_loss_delta.signatures)")
        r = subprocess.run([sys.executable, "-c", code + shared], env=env, cwd=ROOT, check=True,
                           capture_output=True, text=True, timeout=300)
        return {p.name.split("-")[0] for p in cache.rglob("*.nbi")}, r.stdout

    child, child_signatures = compiled(
        "from nn_core import precompile; precompile._compile('float32', ['relu'])",
        tmp_path / "child")
    training, training_signatures = compiled(
        "import numpy as np; from nn_core import MLP; X = np.ones((8, 2), np.float32); "
        "MLP(2, hidden=(3,)).fit(X, X[:, 0], epochs=1, threads=1)", tmp_path / "training")
    assert "kernels.entry.locals.predict" in child
    assert any(name.startswith("kernels.epoch_kernel") for name in training)
    assert child & training == {"kernels.block_finite", "kernels.output_loss_delta"}
    assert child_signatures == training_signatures
    assert child_signatures.count("float32") == 7  # one signature each: 2 + 5 arrays


def test_nothing_started_when_no_process_can_start(monkeypatch):
    def refuse(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "python")

    monkeypatch.setattr(precompile, "usable_cpus", lambda: 2)
    monkeypatch.setattr(precompile, "has_kernel", lambda dispatcher, dtype: False)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert precompile.start("float32", ["relu"]) is False
    precompile.wait()
