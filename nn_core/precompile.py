"""Compiling ahead: kernels a cold run needs later, compiled in a child process.

From an empty Numba cache (a first run, a new install, a changed kernel source) a first
``train.py`` spends most of its time compiling: the training kernel, then, at the first
prediction (the dev rows after epoch 1), the prediction kernel, one after the other in one
process. The two are independent. :func:`start` compiles the prediction kernels in a child
process (``python -m nn_core.precompile DTYPE BLOCKS ONEHOT``), which writes them to Numba's
on-disk cache while this process compiles the training kernel on another core;
:func:`wait`, which the numba backend calls before each prediction, waits until the child
has cached the block-prediction kernels, after which this process loads them from the cache
(a few hundredths of a second) instead of compiling them (1 to 2 s each).

The child then goes on to compile the one-hot entry (``nn_core/kernels.py: entry``,
``"onehot"``) of the saved model's activation: ``train.py`` predicts through the feature
matrix, but ``predict.py`` through the one-hot split (``nn_core/onehot.py``), so without it
the first ``predict.py`` after a cold ``train.py`` compiles that kernel (2 s of its 2.5 s
on the bundled table). :func:`wait_all` waits for the child to end: the run calls it when
its work is done (the child, on its own core, has long finished by then), so that the entry
is cached before ``train.py`` exits, and the backend's ``predict_onehot`` calls it before
it may compile a one-hot entry itself.

Numba's file cache has no lock: two processes saving *different* signatures of one function
at the same moment could pick the same data file (one-hot entries of two activations are
two signatures of one cached function, the closure's). So the child compiles only what this
process does not compile before the matching wait returns: the prediction entries
(block ones before :func:`wait`, one-hot ones before :func:`wait_all`) and the output
function they call (``apply_output``, called by nothing else); and two functions of one
signature per dtype, which either process saves under the same key, to the same file,
atomically: ``block_finite`` for a read-only C-ordered matrix (``nn_core/validation.py:
as_matrix`` gives it no other, and the one-hot entry's check passes it the same) and the
training kernel's output and loss (``output_loss_delta``, called by ``nn_core/kernels.py:
batch_gradient`` only, with the logits as a strided column). The child compiles the latter
first: the run's training compile reaches it a second or two in, and loads it from the cache
when the child was quicker (0.5 s of compiling saved). ``tests/nn_core/test_precompile.py``
checks that the child and a training run share no other cached function and give these the
same signatures, that the child gives every function but the entries one signature, and
that ``predict.py`` after a cold ``train.py`` compiles nothing.

Nothing is started on one usable CPU (nothing to overlap), when the kernels are compiled or
cached already, or for a backend other than numba. If the child fails, :func:`wait` and
:func:`wait_all` return all the same and this process compiles what it needs itself, as
without it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Callable, Iterable

_CHILDREN: list[subprocess.Popen] = []
#: The child's line on its stdout once the block kernels are cached (:func:`wait`).
READY = b"block kernels cached\n"


def start(dtype: str, activations: Iterable[str], onehot: Iterable[str] = ()) -> bool:
    """Start compiling, in a child process, the block-prediction kernel of each hidden
    activation in ``activations`` for ``dtype`` networks (and, first, the training kernel's
    output and loss), then the one-hot prediction kernel of each in ``onehot``, those of
    them that are not compiled or cached already.

    Returns True when a child was started. Call it before a cold ``fit``; the numba
    backend's ``predict`` waits for the block kernels (:func:`wait`), its
    ``predict_onehot`` and the end of the run for the child (:func:`wait_all`).
    """
    if usable_cpus() < 2:
        return False
    from . import kernels

    def missing(kind: str, names: Iterable[str]) -> list[str]:
        return sorted({a for a in names if not has_kernel(
            kernels.entry(kind, kernels.activation_index(a)), dtype)})

    try:
        blocks, onehot = missing("blocks", activations), missing("onehot", onehot)
    except Exception:  # Numba's cache internals moved: compile in this process, as before
        return False
    if not (blocks or onehot):
        return False
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "nn_core.precompile", dtype, ",".join(blocks),
             ",".join(onehot)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
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
    """Wait until the children :func:`start` began have cached the block-prediction
    kernels (they may go on with the one-hot ones); with none, return at once."""
    for child in _CHILDREN:
        if not child.stdout.closed:
            for line in child.stdout:  # to its line; no line if it ended first
                if line == READY:
                    break
            child.stdout.close()


def wait_all() -> None:
    """Wait for the children :func:`start` began to end (none: returns at once)."""
    wait()
    while _CHILDREN:
        _CHILDREN.pop().wait()


def _stop() -> None:
    """At exit (an error, Ctrl-C): end the children still compiling."""
    for child in _CHILDREN:
        child.kill()
        child.wait()
        child.stdout.close()


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


def _compile(dtype: str, blocks: Iterable[str], onehot: Iterable[str] = (),
             ready: Callable[[], None] = lambda: None) -> None:
    """The child: the training kernel's output and loss with the argument types
    ``batch_gradient`` passes; one row predicted with a network of one hidden unit per
    activation in ``blocks``, with the argument types ``NumbaBackend.predict`` passes
    (``MLP.theta``, its int64 ``layout``, C-ordered rows); ``ready()``; then the same row
    through the one-hot kernel of each activation in ``onehot``, as
    ``NumbaBackend.predict_onehot`` passes it (C-ordered dense features ``X_d``, int32
    codes ``R``, ``W_0``'s dense rows): the very signatures a run and ``predict.py`` call.
    """
    import numpy as np

    from . import kernels

    z = np.zeros((2, 2), dtype=dtype)[:, 0]  # a strided column of logits, as Z_out[:m, 0]
    kernels.output_loss_delta(0, z, *(np.zeros(2, dtype=dtype) for _ in range(4)), 2)
    # Inputs x = (x_0, one-hot block of one feature): W_0 (2, 1), b_0, W_1 (1, 1), b_1.
    theta = np.zeros(5, dtype=dtype)
    layout = np.array([[0, 2, 2, 1], [3, 4, 1, 1]], dtype=np.int64)
    X, p = np.zeros((1, 2), dtype=dtype), np.empty(1, dtype=dtype)
    for activation in blocks:
        kernels.predict_blocks(X, theta, layout, kernels.activation_index(activation), 0, 1, p)
    ready()
    Xd, R, Wd = X[:, :1].copy(), np.ones((1, 1), dtype=np.int32), np.zeros((1, 1), dtype=dtype)
    for activation in onehot:
        kernels.predict_blocks_onehot(Xd, R, Wd, theta, layout,
                                      kernels.activation_index(activation), 0, 1, p)


def _tell_parent() -> None:
    """The child's line to :func:`wait`: the block kernels are cached."""
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()


if __name__ == "__main__":
    _compile(sys.argv[1], filter(None, sys.argv[2].split(",")),
             filter(None, sys.argv[3].split(",")), _tell_parent)
