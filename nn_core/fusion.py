"""One GPU kernel per element-wise rule: ``cupy.fuse`` over the reference's own functions.

On a GPU each array operation is a kernel launch of its own, a few
microseconds however small the array. Adam's update is a dozen operations on
a vector of about 10^4 parameters, so launches, not arithmetic, are its cost;
the same holds for a hidden layer's bias, activation, dropout mask and
backward rule at small batch sizes. ``cupy.fuse`` traces a Python function
once per argument dtypes and compiles the whole expression into a single
element-wise kernel (or a reduction kernel, when the function ends in
``np.sum``).

The rules are written once, with NumPy's names (``np.sqrt``, ``np.exp``, in
``activations.py``, ``losses.py``, ``optim.py`` and ``dropout.py``). CuPy's
tracer understands only CuPy's own functions, so :func:`fused` runs a rule's
code with its global name ``np`` bound to the CuPy module, in the rule and in
the functions it calls, and fuses that. On NumPy it returns the rule itself.
The reference (``reference.py``) never calls this module: it takes its rules
as arguments, and the ``cupy`` backend passes them fused
(``backends.py: CupyBackend.rules``), so the CPU suite runs the very lines
that the GPU fuses.

A rule that is to be fused may use only what ``cupy.fuse`` traces: operators
(in-place ones included, on its array arguments), ``a[...] = value``,
``.astype``, NumPy ufuncs through ``np.``, and at most one ``np.sum``; no
other indexing, no ``.shape``, no Python ``if`` on array values. Its scalar
arguments must be Python numbers, which both NumPy 2 and CuPy treat as
"weak" (they take the arrays' dtype). ``tests/helpers/strict_cupy.py: fuse``
enforces these rules on the CPU, and
``tests/nn_core/test_cupy_fusion_trace.py`` traces every fused rule with the real
CuPy's tracer wherever CuPy is installed, GPU or not.
"""

from __future__ import annotations

import dis
import functools
import types
from collections.abc import Callable

import numpy as np

#: ``False`` makes :func:`fused` return every rule unfused, one kernel per
#: operation on a GPU: only to measure what fusion gains
#: (``benchmarks/gpu_check.py``).
FUSE = True


def fused(rule: Callable, xp: types.ModuleType) -> Callable:
    """The rule ``rule`` for arrays of module ``xp``: itself on NumPy, one fused kernel on CuPy.

    Parameters
    ----------
    rule : function
        An element-wise rule written with ``np.`` (see the module docstring).
    xp : module
        ``numpy``, or ``cupy`` (or its test stand-in).

    Returns
    -------
    callable
        Same arguments and results as ``rule``.
    """
    if xp is np or not FUSE:
        return rule
    return _fused(rule, xp)


@functools.cache
def _fused(rule, xp):
    # Cached so that each rule is one ``Fusion`` object: CuPy caches the traced
    # kernels per object, and a new object would trace and compile again.
    return xp.fuse(kernel_name=rule.__name__)(_with_array_module(rule, xp))


def _with_array_module(f, xp):
    """A copy of ``f`` whose name ``np`` means ``xp``, as do the functions ``f`` calls.

    "Calls" covers the functions that ``f`` closes over and the module-level
    functions of ``nn_core`` that it names.
    """
    if not isinstance(f, types.FunctionType):
        return f
    namespace = dict(f.__globals__)
    namespace["np"] = xp
    for name in _global_names(f.__code__):
        value = namespace.get(name)
        if isinstance(value, types.FunctionType) and value.__module__.startswith("nn_core"):
            namespace[name] = _with_array_module(value, xp)
    closure = None
    if f.__closure__ is not None:
        closure = tuple(
            types.CellType(_with_array_module(cell.cell_contents, xp)) for cell in f.__closure__
        )
    g = types.FunctionType(f.__code__, namespace, f.__name__, f.__defaults__, closure)
    g.__doc__ = f.__doc__
    return g


def _global_names(code) -> set[str]:
    """The global names that ``code`` reads (``co_names`` also holds attribute names)."""
    return {ins.argval for ins in dis.get_instructions(code) if ins.opname == "LOAD_GLOBAL"}
