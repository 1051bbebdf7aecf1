"""Dropout masks from a counter-based hash, the same on every backend.

A mask is a pure function of (seed, optimizer step, layer, row, unit): every
backend draws the same masks, and a run does not depend on thread order. The
hash is the SplitMix64 finaliser; :func:`uniform01` turns its top 53 bits into
a float in [0, 1). The compiled kernels call :func:`dropout_key` and
:func:`uniform01` too (``nn_core/kernels.py: fill_dropout_mask``).
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from .fusion import fused

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


# register_jitable: a plain Python function that compiled kernels may also call.
@register_jitable
def splitmix64(x):
    """SplitMix64 finaliser: a bijective scramble of 64-bit integers (uint64 in, out)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def uniform01(x):
    """Map uint64 counters to floats uniform in [0, 1), from the top 53 bits of the hash."""
    return (splitmix64(x) >> _S11) * (1.0 / 9007199254740992.0)


@register_jitable
def dropout_key(seed: int, step: int, layer: int):
    """One 64-bit key per (seed, optimizer step, layer): the base counter of a mask.

    Hashed on one-element arrays: NumPy warns on the (intended) wrap-around of
    uint64 scalar arithmetic, not on arrays. The compiled kernels call this
    same function.
    """
    k = splitmix64(np.full(1, seed, dtype=np.uint64))
    k = splitmix64(k ^ np.full(1, step, dtype=np.uint64))
    return splitmix64(k ^ np.full(1, layer, dtype=np.uint64))[0]


def dropout_mask(seed: int, step: int, layer: int, n: int, width: int, p: float, dtype, xp=np):
    """Inverted-dropout mask ``D`` of shape ``(n, width)``.

    ``D_ij = 1 / (1 - p)`` where unit ``j`` of row ``i`` is kept
    (probability ``1 - p``), else 0; scaling the kept units by ``1/(1-p)``
    keeps ``E[H D] = H``, so no rescaling is needed at prediction time.
    """
    counter = xp.arange(n * width, dtype=xp.uint64).reshape(n, width)
    D = xp.empty((n, width), dtype=dtype)
    fused(inverted_dropout, xp)(D, counter + dropout_key(seed, step, layer), p, 1.0 / (1.0 - p))
    return D


def inverted_dropout(D, counter, p, scale):
    """``D = [uniform01(counter) >= p] * scale``, written into ``D`` (``scale = 1 / (1 - p)``).

    The counter hash and the scaling are one fused kernel on a GPU instead of fifteen.
    """
    D[...] = (uniform01(counter) >= p).astype(D.dtype) * scale
