"""Every rule the ``cupy`` backend fuses, traced by the real CuPy's fusion tracer.

``cupy.fuse`` compiles a function into one kernel only if its tracer (the
"old" fusion of ``cupy/_core/fusion.pyx``) understands every operation; on
anything else it silently falls back to an experimental one. Tracing needs no
GPU: the tracer sees only the dtype and ndim of its arguments, so these tests
trace on arrays that point at no memory and run wherever CuPy imports,
without a CUDA device. They check, for float32 and float64:

* the rule traces into one element-wise kernel, with NumPy's names bound to
  CuPy (``nn_core/fusion.py``);
* every traced operation computes in the arrays' dtype: no float64 operation
  in a float32 kernel (Python scalars must stay weak);
* the kernel writes exactly the arguments the rule updates in place;
* where a C++ compiler is at hand, the traced kernel's own code (CuPy's
  generated operations and ufunc routines), compiled for the host, computes
  what the rule computes on NumPy to a few units in the last place: the trace
  is the rule, with nothing dropped, reordered or miscast;
* where nvcc is at hand, the same code with CuPy's headers compiles for the
  GPU (PTX for sm_90).

GPU arithmetic (fused multiply-add, the device's ``exp``), CuPy's own
compilation through NVRTC and speed are for ``tests/test_backends.py`` and
``benchmarks/gpu_check.py`` on a CUDA machine. These tests use CuPy internals
(``_FusionHistory``, the kernels' ``operation`` and ``preamble``), written
against CuPy 14.2, and skip where CuPy is missing.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nn_core import dropout, fusion, optim
from nn_core.activations import ACTIVATIONS
from nn_core.losses import LOSSES, OUTPUTS

#: What passes its input through: its kernel is a copy, with no operation.
IDENTITY_RULES = {ACTIVATIONS["identity"].forward, ACTIVATIONS["identity"].backward}

cupy = pytest.importorskip(
    "cupy", reason="CuPy is not installed (the gpu extra; these tests need no GPU)"
)
if getattr(cupy, "__version__", "").endswith("stand-in"):
    pytest.skip("the strict stand-in, not CuPy", allow_module_level=True)
_core_fusion = pytest.importorskip("cupy._core.fusion")
if not hasattr(_core_fusion, "_FusionHistory"):
    pytest.skip(
        f"CuPy {cupy.__version__} has no _FusionHistory (written against CuPy 14.2)",
        allow_module_level=True,
    )


def _cases():
    """``(rule, arguments, indices of the arguments it writes)``.

    An argument is a shape (an array of the test's dtype), ``(shape, dtype)``
    (an array of that dtype) or a Python scalar.
    """
    n, d, p = 8, 5, 40
    cases = [(dropout.inverted_dropout, [(n, d), ((n, d), "uint64"), 0.3, 1 / 0.7], {0})]
    for a in ACTIVATIONS.values():
        cases.append((a.forward, [(n, d)], set()))
        cases.append((a.backward, [(n, d), (n, d), (n, d)], set()))
    for name, g in OUTPUTS.items():
        if g not in {a.forward for a in ACTIVATIONS.values()}:
            cases.append((g, [(n,)], set()))
        cases.append((LOSSES[name], [(n,), (n,)], set()))
    cases.append((optim.decay_weights, [(p,), (p,), 1e-3], {0}))
    # (theta, g, m, v, lr, mu, b1, 1 - b1, b2, 1 - b2, lr_t, r, eps); theta, m, v written
    step = [0.1, 0.9, 0.9, 0.1, 0.999, 0.001, 0.03, 1.2, 1e-8]
    for update in optim.UPDATES.values():
        cases.append((update, [(p,), (p,), (p,), (p,), *step], {0, 2, 3}))
    return cases


CASES = _cases()


def _fake_arguments(specs, dtype):
    """The arguments of one case as the tracer sees them: arrays without memory, scalars."""
    arguments = []
    for spec in specs:
        if not isinstance(spec, tuple):
            arguments.append(spec)
        elif isinstance(spec[-1], str):
            arguments.append(_array_without_memory(*spec))
        else:
            arguments.append(_array_without_memory(spec, dtype))
    return arguments


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
    for a in ACTIVATIONS.values():
        assert {a.forward, a.backward} <= traced
    assert set(OUTPUTS.values()) | set(LOSSES.values()) <= traced
    assert {dropout.inverted_dropout, optim.decay_weights, *optim.UPDATES.values()} <= traced
    source = Path(optim.__file__).read_text(encoding="utf-8")
    assert "fused(decay_weights, xp)" in source and "fused(UPDATES[self.name], xp)" in source


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule, shapes, written", CASES, ids=[c[0].__name__ for c in CASES])
def test_rule_traces_into_one_kernel_in_its_dtype(rule, shapes, written, dtype):
    args = _fake_arguments(shapes, dtype)
    history, kernel = _trace(rule, args)

    assert type(kernel).__name__ == "ElementwiseKernel"
    assert history.reduce_op is None

    allowed = {np.dtype(dtype), np.dtype(bool)}
    if rule is dropout.inverted_dropout:
        # The counter hash is uint64 and its uniform draw float64, as in NumPy.
        allowed |= {np.dtype("uint64"), np.dtype("float64")}
    ops = history.op_list + history.postmap_op_list
    assert bool(ops) == (rule not in IDENTITY_RULES)
    for op in ops:
        dtypes = {np.dtype(t) for t in op.dtypes}
        assert dtypes <= allowed, (
            f"{rule.__name__} computes {op.submodule.name} in {sorted(map(str, dtypes))} "
            f"on {dtype} arrays"
        )
    params = history.param_list[: len(args)]
    assert {i for i, var in enumerate(params) if var.mutable} == written


# --------------------------------------------------------------- the traced code, compiled
_CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "long long": ctypes.c_longlong}


def _kernel_source(kernel, args, name, gpu=False) -> str:
    """C++ that runs ``kernel``'s generated code over flat arrays, on the host or the GPU.

    Every array argument arrives flat and already broadcast (``n`` elements),
    a scalar by value; the loop body is CuPy's: the fused ``operation`` of an
    element-wise kernel, or ``_pre_map``, the ``a + b`` reduction and
    ``_post_map`` of a reduction kernel (serial, in one thread on the GPU:
    only compiled there, never run). On the host, CuPy's headers (half
    precision, unused here) are left out and ``__device__`` means ``static``.
    """
    params = list(kernel.in_params) + list(kernel.out_params)
    scalar = [i < len(args) and not isinstance(args[i], tuple) for i in range(len(params))]
    signature = ", ".join(
        f"{p.ctype} {p.name}_value" if is_scalar else f"{p.ctype}* {p.name}_data"
        for p, is_scalar in zip(params, scalar, strict=True)
    )

    def bind(p, is_scalar):
        if is_scalar:
            return f"const {p.ctype} {p.name} = {p.name}_value;"
        const = "const " if p.is_const else ""
        return f"{const}{p.ctype}& {p.name} = {p.name}_data[i];"

    if gpu:
        loop = "for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; "
        loop += "i += (long)blockDim.x * gridDim.x)"
    else:
        loop = "for (long i = 0; i < n; ++i)"
    if type(kernel).__name__ == "ElementwiseKernel":
        binds = "\n".join(map(bind, params, scalar))
        body = f"{loop} {{\n{binds}\n{kernel.operation};\n}}"
    else:
        binds = "\n".join(map(bind, params[: len(kernel.in_params)], scalar))
        (out,) = kernel.out_params
        body = (
            f"{kernel.reduce_type} a = {kernel.identity};\n"
            f"for (long i = 0; i < n; ++i) {{\n{binds}\n"
            f"{kernel.reduce_type} b = {kernel.map_expr};\na = {kernel.reduce_expr};\n}}\n"
            f"{out.ctype}& {out.name} = {out.name}_data[0];\n{kernel.post_map_expr};"
        )
        if gpu:
            body = f"if (blockIdx.x == 0 && threadIdx.x == 0) {{\n{body}\n}}"
    if gpu:
        # A namespace per kernel: CuPy's ufunc routines repeat across kernels.
        return (
            f"namespace {name}_ns {{\n{kernel.preamble}\n"
            f"extern \"C\" __global__ void {name}(long n, {signature}) {{\n{body}\n}}\n}}\n"
        )
    preamble = "\n".join(
        line for line in kernel.preamble.splitlines() if not line.startswith("#include")
    )
    return (
        "#include <cmath>\n#include <algorithm>\nusing namespace std;\n#define __device__ static\n"
        f"{preamble}\nextern \"C\" void {name}(long n, {signature}) {{\n{body}\n}}\n"
    )


def _traced_kernels():
    """``{(rule, dtype): (function name, traced kernel)}`` for every case."""
    kernels = {}
    for dtype in ("float32", "float64"):
        for i, (rule, shapes, _) in enumerate(CASES):
            args = _fake_arguments(shapes, dtype)
            kernels[rule, dtype] = (f"case{i}_{dtype}", _trace(rule, args)[1])
    return kernels


def test_traced_kernels_compile_for_the_gpu(tmp_path):
    """The traced kernels' code, with CuPy's headers, compiles for sm_90 (Hopper: H100/H200)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc (the CUDA toolkit) is not installed")
    shapes = {rule: shapes for rule, shapes, _ in CASES}
    source = tmp_path / "traced.cu"
    source.write_text("".join(
        _kernel_source(kernel, shapes[rule], name, gpu=True)
        for (rule, _), (name, kernel) in _traced_kernels().items()
    ), encoding="utf-8")
    include = Path(cupy.__file__).parent / "_core" / "include"
    result = subprocess.run(
        [nvcc, "-ptx", "-arch=sm_90", "-std=c++17", f"-I{include}", "-diag-suppress", "177,549",
         str(source), "-o", str(tmp_path / "traced.ptx")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ptx = (tmp_path / "traced.ptx").read_text()
    assert ptx.count(".entry") == 2 * len(CASES)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Every case's traced kernel, for float32 and float64, in one shared library."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) to build the traced kernels for the host")
    shapes = {rule: shapes for rule, shapes, _ in CASES}
    kernels = _traced_kernels()
    directory = tmp_path_factory.mktemp("traced")
    objects = []
    # One translation unit per kernel: CuPy's ufunc routines repeat across kernels.
    for (rule, _), (name, kernel) in kernels.items():
        path = directory / f"{name}.cpp"
        path.write_text(_kernel_source(kernel, shapes[rule], name), encoding="utf-8")
        objects.append(directory / f"{name}.o")
        subprocess.run(
            [compiler, "-std=c++17", "-O1", "-ffp-contract=off", "-fPIC", "-c", str(path),
             "-o", str(objects[-1])],
            check=True, capture_output=True, text=True,
        )
    library = directory / "traced.so"
    subprocess.run([compiler, "-shared", *map(str, objects), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library)), kernels


LOSS_RULES = list(LOSSES.values())


def _inputs(rule, shapes, dtype, rng):
    """Arguments for one case: arrays of ``dtype`` in each rule's valid range, scalars as given."""
    args = []
    for k, s in enumerate(shapes):
        if not isinstance(s, tuple):
            args.append(s)
        elif isinstance(s[-1], str):  # the dropout counters
            args.append(rng.integers(0, 2**63, size=s[0], dtype=s[1]))
        elif rule in LOSS_RULES:
            # (Z, y): logits, 0/1 targets
            values = [rng.normal(size=s) * 3, rng.integers(0, 2, s)]
            args.append(values[k].astype(dtype))
        elif rule is optim.UPDATES["adam"] and k == 3:
            args.append(rng.uniform(0.0, 1.0, s).astype(dtype))  # v >= 0
        else:
            args.append((rng.normal(size=s) * 2).astype(dtype))
    return args


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule, shapes, written", CASES, ids=[c[0].__name__ for c in CASES])
def test_traced_kernel_computes_the_rule(host_kernels, rule, shapes, written, dtype):
    library, kernels = host_kernels
    _assert_kernel_computes(library, *kernels[rule, dtype], rule, shapes, written, dtype)


def test_the_host_check_catches_a_wrong_kernel(host_kernels):
    """Not vacuous: the ReLU kernel does not pass for the tanh rule."""
    library, kernels = host_kernels
    relu, tanh = ACTIVATIONS["relu"].forward, ACTIVATIONS["tanh"].forward
    shapes = next(shapes for rule, shapes, _ in CASES if rule is tanh)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        _assert_kernel_computes(library, *kernels[relu, "float32"], tanh, shapes, set(),
                                "float32")


def _assert_kernel_computes(library, name, kernel, rule, shapes, written, dtype):
    """Run the compiled kernel ``name`` on random inputs; compare with ``rule`` on NumPy."""
    rng = np.random.default_rng(7)
    args = _inputs(rule, shapes, dtype, rng)
    expected_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    expected = rule(*expected_args)

    array_shapes = [a.shape for a in args if isinstance(a, np.ndarray)]
    full = np.broadcast_shapes(*array_shapes)
    n = int(np.prod(full))
    flat = [
        np.ascontiguousarray(np.broadcast_to(a, full)).ravel() if isinstance(a, np.ndarray) else a
        for a in args
    ]
    out = np.zeros(n, dtype=dtype) if kernel.out_params else None
    c_args = [ctypes.c_long(n)]
    for p, value in zip(kernel.in_params, flat, strict=True):
        if isinstance(value, np.ndarray):
            c_args.append(value.ctypes.data_as(ctypes.c_void_p))
        else:
            c_args.append(_CTYPES[p.ctype](value))
    if out is not None:
        c_args.append(out.ctypes.data_as(ctypes.c_void_p))
    getattr(library, name)(*c_args)

    # A few units in the last place: the host's exp and log1p are not NumPy's. GELU's
    # derivative cancels twice (1 - T^2 for large |Z|, and its two terms for Z < 0), which
    # turns a few units of tanh's last place into up to ~50 of the result's scale (seen).
    rtol = (64 if rule is ACTIVATIONS["gelu"].backward else 4) * np.finfo(dtype).eps
    if expected is not None:
        got = out.reshape(full)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    for k in written:
        np.testing.assert_allclose(flat[k], expected_args[k].ravel(), rtol=rtol, atol=rtol)
    for k, a in enumerate(args):
        if isinstance(a, np.ndarray) and k not in written and a.shape == full:
            np.testing.assert_array_equal(flat[k], a.ravel())
