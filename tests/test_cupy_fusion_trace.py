"""Every rule the ``cupy`` backend fuses, traced by the real CuPy's fusion tracer.

``cupy.fuse`` compiles a function into one kernel only if its tracer (the
"old" fusion of ``cupy/_core/fusion.pyx``) understands every operation; on
anything else it silently falls back to an experimental one. Tracing needs no
GPU: the tracer sees only the dtype and ndim of its arguments, so these tests
trace on arrays that point at no memory and run wherever CuPy imports,
without a CUDA device. They check, for float32 and float64:

* the rule traces (one element-wise kernel, or one reduction kernel for the
  loss sums), with NumPy's names bound to CuPy (``nn_core/fusion.py``);
* every traced operation computes in the arrays' dtype: no float64 operation
  in a float32 kernel (Python scalars must stay weak);
* the kernel writes exactly the arguments the rule updates in place.

They use CuPy internals (``_FusionHistory``), written against CuPy 14.2, and
skip where CuPy is missing. Running the kernels is for
``tests/test_backends.py`` on a CUDA machine.
"""

import numpy as np
import pytest

from nn_core import fusion, optim, reference
from nn_core.activations import BACKWARDS

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install cupy-cuda12x)")
if getattr(cupy, "__version__", "").endswith("stand-in"):
    pytest.skip("the strict stand-in, not CuPy", allow_module_level=True)
_core_fusion = pytest.importorskip("cupy._core.fusion")
if not hasattr(_core_fusion, "_FusionHistory"):
    pytest.skip(
        f"CuPy {cupy.__version__} has no _FusionHistory (written against CuPy 14.2)",
        allow_module_level=True,
    )


def _cases():
    """``(rule, argument shapes or Python scalars, indices of the arguments it writes)``."""
    n, d, p = 8, 5, 40
    cases = []
    for rule in reference.BIAS_ACTIVATIONS.values():
        cases.append((rule, [(n, d), (d,)], set()))
    for rule in BACKWARDS.values():
        cases.append((rule, [(n, d), (n, d)], set()))
    for rule in reference.OUTPUT_DELTAS.values():
        cases.append((rule, [(n,), (n,), (n,), n], set()))
    for rule in reference.WEIGHTED_LOSS_SUMS.values():
        cases.append((rule, [(n,), (n,), (n,)], set()))
    cases += [
        (optim.decay_weights, [(p,), (p,), 1e-3], {0}),
        (optim.sgd_update, [(p,), (p,), 0.1], {0}),
        (optim.momentum_update, [(p,), (p,), (p,), 0.1, 0.9], {0, 1}),
        (optim.nesterov_update, [(p,), (p,), (p,), 0.1, 0.9], {0, 1}),
        (
            optim.adam_update,
            [(p,), (p,), (p,), (p,), 0.9, 0.1, 0.999, 0.001, 0.01, 0.03, 1e-8],
            {0, 1, 2},
        ),
    ]
    return cases


CASES = _cases()


def _array_without_memory(shape, dtype):
    """A CuPy array whose pointer is never dereferenced (no allocation, no device call)."""
    from cupy.cuda import memory

    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    mem = memory.UnownedMemory(0x10000, size, None, device_id=0)
    return cupy.ndarray(shape, dtype, memptr=memory.MemoryPointer(mem, 0))


def _trace(rule, args):
    """What ``cupy.fuse(rule)(*args)`` builds on its first call: the tracer's history and kernel."""
    history = _core_fusion._FusionHistory()
    local = _core_fusion._thread_local
    local.history, local.is_old_fusing = history, True
    try:
        kernel, _ = history.get_fusion(
            fusion._with_array_module(rule, cupy), tuple(args), rule.__name__
        )
    finally:
        local.history, local.is_old_fusing = None, False
    return history, kernel


def test_the_cases_cover_every_rule_the_backend_fuses():
    traced = {rule for rule, _, _ in CASES}
    tables = [reference.BIAS_ACTIVATIONS, BACKWARDS, reference.OUTPUT_DELTAS,
              reference.WEIGHTED_LOSS_SUMS]
    for table in tables:
        assert set(table.values()) <= traced
    source = open(optim.__file__, encoding="utf-8").read()
    for name in ("decay_weights", "sgd_update", "momentum_update", "nesterov_update",
                 "adam_update"):
        assert f"fused({name}, xp)" in source


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule, shapes, written", CASES, ids=[c[0].__name__ for c in CASES])
def test_rule_traces_into_one_kernel_in_its_dtype(rule, shapes, written, dtype):
    args = [_array_without_memory(s, dtype) if isinstance(s, tuple) else s for s in shapes]
    history, kernel = _trace(rule, args)

    reduces = rule in reference.WEIGHTED_LOSS_SUMS.values()
    assert type(kernel).__name__ == ("ReductionKernel" if reduces else "ElementwiseKernel")
    assert (history.reduce_op is not None) == reduces

    ops = history.op_list + history.postmap_op_list
    # identity's backward rule passes dH through: its kernel is a copy, no operation.
    assert bool(ops) == (rule is not BACKWARDS["identity"])
    for op in ops:
        dtypes = {np.dtype(t) for t in op.dtypes}
        assert dtypes <= {np.dtype(dtype), np.dtype(bool)}, (
            f"{rule.__name__} computes {op.submodule.name} in {sorted(map(str, dtypes))} "
            f"on {dtype} arrays"
        )
    params = history.param_list[: len(args)]
    assert {i for i, var in enumerate(params) if var.mutable} == written
