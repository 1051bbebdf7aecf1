"""Compiling the prediction kernels ahead in a child process (nn_core/precompile.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn_core import MLP, backends, precompile

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "online_shoppers_intention.csv"

# In a process whose Numba cache (NUMBA_CACHE_DIR) is empty: predict 300 rows with a tanh
# float64 network, through the feature matrix and through the one-hot split (features 3
# and 4 a one-hot block), after letting a child compile both kernels (argv[1] == "ahead")
# or not. Prints whether the child was started, each kernel's cache hits and misses in
# this process, and the predictions' bytes.
SCRIPT = """
import sys
import numpy as np
from nn_core import MLP, backends, kernels, precompile

act = kernels.activation_index("tanh")
blocks, onehot = kernels.entry("blocks", act), kernels.entry("onehot", act)
started = precompile.start("float64", ["tanh"], ["tanh"]) if sys.argv[1] == "ahead" else None
precompile.wait()
cached = precompile.has_kernel(blocks, "float64")
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 5))
network = MLP(5, hidden=(4,), activation="tanh", dtype="float64", seed=1)
p = network.predict_proba(X)
R = rng.integers(3, 5, size=(300, 1)).astype(np.int32)
q = backends.get("numba").predict_onehot(network, X[:, :3].copy(), np.arange(3), R)
counts = [sum(getattr(k.stats, s).values()) for k in (blocks, onehot)
          for s in ("cache_hits", "cache_misses")]
print(started, cached, *counts, p.tobytes().hex() + q.tobytes().hex())
"""


def _run(mode: str, cache: Path) -> list[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=True)
    return r.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(precompile.usable_cpus() < 2, reason="start() needs two usable CPUs")
def test_child_compiles_the_kernels_this_process_then_loads(tmp_path):
    started, cached, *counts, ahead = _run("ahead", tmp_path / "ahead")
    # The child wrote both kernels to the cache; this process loaded them, compiled nothing
    # (predict_onehot waited for the child to end, not only for the block kernel).
    assert (started, cached, counts) == ("True", "True", ["1", "0", "1", "0"])
    # The same bits as kernels compiled in the process itself.
    _, _, *counts, own = _run("own", tmp_path / "own")
    assert counts == ["0", "1", "0", "1"]
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


# The child's compile (nn_core.precompile._compile) in a process of its own: the cached
# files (one .nbi index per function, one .nbc per signature) it wrote after it told its
# parent that the block kernels are cached (ready()), i.e. while the parent may compile.
CHILD = """
from pathlib import Path
from nn_core import precompile
cache = lambda: {p.name for p in Path(sys.argv[1]).rglob("*.nb*")}
at_ready = set()
precompile._compile("float32", ["relu"], ["relu"], lambda: at_ready.update(cache()))
print(*sorted(cache() - at_ready))
"""


@pytest.mark.slow
def test_the_child_and_training_share_two_functions_of_one_signature(tmp_path):
    # Numba's cache has no lock: the child and a run compiling at the same time must not
    # save different signatures of one function. Training's cached functions and the
    # child's may share block_finite and output_loss_delta (see the module).
    # The two they share must have one signature, the same in both.
    def compiled(code: str, cache: Path) -> tuple[set[str], list[str]]:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        shared = ("\nfrom nn_core import kernels\n"
                  "print(kernels.block_finite.signatures, kernels.output_loss_delta.signatures)")
        r = subprocess.run([sys.executable, "-c", "import sys\n" + code + shared, str(cache)],
                           env=env, cwd=ROOT, check=True, capture_output=True, text=True,
                           timeout=300)
        return {p.name.split("-")[0] for p in cache.rglob("*.nbi")}, r.stdout.splitlines()

    child, (after_ready, child_signatures) = compiled(CHILD, tmp_path / "child")
    training, (training_signatures,) = compiled(
        "import numpy as np; from nn_core import MLP; X = np.ones((8, 2), np.float32); "
        "MLP(2, hidden=(3,)).fit(X, X[:, 0], epochs=1, threads=1)", tmp_path / "training")
    assert {"kernels.entry.locals.predict", "kernels.entry.locals.predict_onehot"} <= child
    assert any(name.startswith("kernels.epoch_kernel") for name in training)
    assert child & training == {"kernels.block_finite", "kernels.output_loss_delta"}
    assert child_signatures == training_signatures
    assert child_signatures.count("float32") == 7  # one signature each: 2 + 5 arrays
    # Once its parent may compile again (wait() returned), the child saves the one-hot
    # entry alone (its index and one signature): no new signature of a function the parent
    # may compile then (block_finite, apply_output, the block entry).
    saved = after_ready.split()
    assert len(saved) == 2
    assert all(name.startswith("kernels.entry.locals.predict_onehot-") for name in saved)


@pytest.mark.slow
@pytest.mark.skipif(precompile.usable_cpus() < 2, reason="start() needs two usable CPUs")
def test_predict_after_a_cold_train_compiles_nothing(tmp_path):
    # train.py predicts through the feature matrix, predict.py through the one-hot split:
    # the one-hot kernel predict.py scores with is cached by the cold train.py's child.
    cache = tmp_path / "cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "train.py", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    subprocess.run(run, env=env, cwd=ROOT, check=True, capture_output=True, timeout=600)
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    assert any(p.name.startswith("kernels.entry.locals.predict_onehot-") for p in files)
    subprocess.run([sys.executable, "predict.py", "--model", str(tmp_path / "run"), "--input",
                    str(DATA), "--output", str(tmp_path / "p.csv")],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "p.csv").stat().st_size > 0
    # Nothing compiled: no cache file written or rewritten.
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == files


def test_only_the_missing_kernels_are_compiled(monkeypatch):
    # The block kernel cached, the one-hot one not: the child compiles the latter alone.
    from nn_core import kernels

    onehot = kernels.entry("onehot", kernels.activation_index("relu"))
    started = []
    monkeypatch.setattr(precompile, "usable_cpus", lambda: 2)
    monkeypatch.setattr(precompile, "has_kernel", lambda dispatcher, dtype: dispatcher
                        is not onehot)
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kwargs: started.append(args))
    monkeypatch.setattr(precompile, "_CHILDREN", [None])  # no atexit handler registered
    assert precompile.start("float32", ["relu"], ["relu"]) is True
    assert started[0][-3:] == ["float32", "", "relu"]


class _Released:
    """A child's stdout as :func:`precompile.wait` reads it (by line): when the parent asks
    for the line after the child's first, it first writes a line to the child's stdin, on
    which the child waits. So the child goes on from its first line (a stray one) only when
    the parent reads on; a ``wait`` that returned at the first line leaves it waiting."""

    def __init__(self, child: subprocess.Popen):
        self.child, self.stdout, self.lines = child, child.stdout, 0

    @property
    def closed(self) -> bool:
        return self.stdout.closed

    def close(self) -> None:
        self.stdout.close()

    def readline(self) -> bytes:
        if self.lines == 1:
            self.child.stdin.write(b"go on\n")
            self.child.stdin.flush()
        self.lines += 1
        return self.stdout.readline()

    def __iter__(self):
        return iter(self.readline, b"")


# A child: a stray line on its stdout, then (once its parent reads on) it creates the file
# argv[1] (its block kernels are cached) and ends with CODE.
STRAY = """import pathlib, sys
print("a line of its own", flush=True)
sys.stdin.readline()
pathlib.Path(sys.argv[1]).touch()
"""


@pytest.fixture
def child(tmp_path, monkeypatch):
    """Start ``STRAY + code`` as precompile's child (its stdout a :class:`_Released`);
    returns it and the file it creates. Ended at teardown if the test left it running."""
    children = []

    def start(code: str) -> tuple[subprocess.Popen, Path]:
        cached = tmp_path / "cached"
        child = subprocess.Popen([sys.executable, "-c", STRAY + code, str(cached)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        children.append(child)
        child.stdout = _Released(child)
        monkeypatch.setattr(precompile, "_CHILDREN", [child])
        return child, cached

    yield start
    for c in children:
        if c.poll() is None:
            c.kill()
        c.wait()
        c.stdin.close()
        c.stdout.close()


def test_wait_returns_at_the_childs_line_wait_all_at_its_end(child):
    # A stray line, then the child's line once the block kernels are cached: wait returns
    # only after the latter. The child goes on (here: until its stdin closes), and wait_all
    # waits for that.
    code = (f"sys.stdout.buffer.write({precompile.READY!r}); sys.stdout.flush(); "
            "sys.stdin.read()")
    process, cached = child(code)
    precompile.wait()
    assert cached.exists()  # wait returned after the child's line, not at the stray one
    assert process.poll() is None  # still running
    process.stdin.close()
    precompile.wait_all()
    assert process.returncode == 0 and precompile._CHILDREN == []


def test_wait_returns_when_the_child_ends_without_its_line(child):
    # failed after a stray line: wait reads to the end; this process compiles what it needs
    process, cached = child("raise SystemExit(3)")
    precompile.wait()
    assert cached.exists()  # read to the child's end, not to its stray line
    precompile.wait_all()
    assert process.returncode == 3


def test_the_onehot_prediction_waits_for_the_whole_child(monkeypatch):
    # A one-hot entry is one more signature of a function the child may be saving: the
    # backend must not compile one before the child has ended.
    calls = []
    monkeypatch.setattr(precompile, "wait_all", lambda: calls.append("wait_all"))
    network = MLP(4, hidden=(3,), seed=0)
    R = np.full((2, 1), 3, dtype=np.int32)
    backends.get("numba").predict_onehot(network, np.zeros((2, 3), np.float32),
                                         np.arange(3), R)
    assert calls == ["wait_all"]


def test_nothing_started_when_no_process_can_start(monkeypatch):
    def refuse(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "python")

    monkeypatch.setattr(precompile, "usable_cpus", lambda: 2)
    monkeypatch.setattr(precompile, "has_kernel", lambda dispatcher, dtype: False)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert precompile.start("float32", ["relu"]) is False
    precompile.wait()
