"""Compiling ahead: kernels a cold run needs later, compiled in a child process.

From an empty Numba cache (a first run, a new install, a changed kernel source) a first
``train.py`` spends most of its time compiling: the training kernel, then, at the first
prediction (the dev rows after epoch 1), the prediction kernel, one after the other in one
process. The two are independent. :func:`start` compiles the prediction kernels in a child
process (``python -m nn_core.precompile DTYPE ACTIVATION...``), which writes them to Numba's
on-disk cache while this process compiles the training kernel on another core;
:func:`wait`, which the numba backend calls before each prediction, lets the child finish,
after which this process loads the kernels from the cache (a few hundredths of a second)
instead of compiling them (1 to 2 s each).

Numba's file cache has no lock: two processes saving *different* signatures of one function
at the same moment could pick the same data file. So the child compiles only what this
process does not compile before :func:`wait` returns: the prediction entries
(``nn_core/kernels.py: entry``) and the output function they call (``apply_output``, called
by nothing else); and two functions of one signature per dtype, which either process saves
under the same key, to the same file, atomically: ``block_finite`` for a read-only C-ordered
matrix (``nn_core/validation.py: as_matrix`` gives it no other) and the training kernel's
output and loss (``output_loss_delta``, called by ``nn_core/kernels.py: batch_gradient``
only, with the logits as a strided column). The child compiles the latter first: the run's
training compile reaches it a second or two in, and loads it from the cache when the child
was quicker (0.5 s of compiling saved). ``tests/nn_core/test_precompile.py`` checks that the
child and a training run share no other cached function and give these the same signatures.

Nothing is started on one usable CPU (nothing to overlap), when the kernels are compiled or
cached already, or for a backend other than numba. If the child fails, :func:`wait` returns
all the same and this process compiles what it needs itself, as without it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Iterable

_CHILDREN: list[subprocess.Popen] = []


def start(dtype: str, activations: Iterable[str]) -> bool:
    """Start compiling, in a child process, the block-prediction kernel of each hidden
    ``activation`` for ``dtype`` networks (and, first, the training kernel's output and
    loss), unless the prediction kernels are compiled or cached already.

    Returns True when a child was started. Call it before a cold ``fit``; the numba
    backend's ``predict`` waits for the child (:func:`wait`).
    """
    if usable_cpus() < 2:
        return False
    from . import kernels

    try:
        missing = sorted({a for a in activations if not has_kernel(
            kernels.entry("blocks", kernels.activation_index(a)), dtype)})
    except Exception:  # Numba's cache internals moved: compile in this process, as before
        return False
    if not missing:
        return False
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "nn_core.precompile", dtype, *missing],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except OSError:  # no interpreter to start (an embedded Python): compile here, as before
        return False
    if not _CHILDREN:
        atexit.register(_stop)
    _CHILDREN.append(child)
    return True


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it, else all)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def wait() -> None:
    """Wait for the children :func:`start` began (none: returns at once)."""
    while _CHILDREN:
        _CHILDREN.pop().wait()


def _stop() -> None:
    """At exit (an error, Ctrl-C): end the children still compiling."""
    for child in _CHILDREN:
        child.kill()
        child.wait()


def has_kernel(dispatcher, dtype: str) -> bool:
    """Whether ``dispatcher`` has, or its cache index lists, a kernel whose first argument
    is a ``dtype`` array (read-only, as ``nn_core.kernels.read_only`` passes it; Numba
    internals: ``_cache``, ``_index_key``, ``_load_index``)."""
    def for_dtype(sig) -> bool:
        return str(sig[0]).startswith(f"readonly array({dtype},")

    if any(for_dtype(sig) for sig in dispatcher.overloads):
        return True
    cache, codegen = dispatcher._cache, dispatcher.targetctx.codegen()
    _, machine, source = cache._index_key((), codegen)
    index = cache._cache_file._load_index()  # empty when the source file changed
    return any(key[1] == machine and key[2] == source and for_dtype(key[0]) for key in index)


def _compile(dtype: str, activations: list[str]) -> None:
    """The child: the training kernel's output and loss with the argument types
    ``batch_gradient`` passes, then one row predicted with a network of one hidden unit per
    activation, with the argument types ``NumbaBackend.predict`` passes (``MLP.theta``, its
    int64 ``layout``, C-ordered rows): the very signatures a run calls."""
    import numpy as np

    from . import kernels

    z = np.zeros((2, 2), dtype=dtype)[:, 0]  # a strided column of logits, as Z_out[:m, 0]
    kernels.output_loss_delta(0, z, *(np.zeros(2, dtype=dtype) for _ in range(4)), 2)
    theta = np.zeros(4, dtype=dtype)  # W_0 (1, 1), b_0, W_1 (1, 1), b_1
    layout = np.array([[0, 1, 1, 1], [2, 3, 1, 1]], dtype=np.int64)
    p = np.empty(1, dtype=dtype)
    for activation in activations:
        kernels.predict_blocks(np.zeros((1, 1), dtype=dtype), theta, layout,
                               kernels.activation_index(activation), 0, 1, p)


if __name__ == "__main__":
    _compile(sys.argv[1], sys.argv[2:])
