"""A strict stand-in for CuPy, so that the CPU suite can run the ``cupy`` backend's code.

Device arrays are :class:`ndarray`, a wrapper around a NumPy array (deliberately
*not* an ``numpy.ndarray`` subclass), and follow CuPy's rules rather than
NumPy's wherever the two differ in a way that matters to code written for
both (CuPy's ``cupy/_core/core.pyx`` and its "Differences between CuPy and
NumPy" page):

* no implicit device -> host conversion: ``numpy.asarray(d)`` / ``np.array(d)``
  raise ``TypeError`` (``__array__``); only ``.get()``, ``cupy.asnumpy``,
  ``.item()``, ``.tolist()`` and ``float/int/bool()`` of a one-element array
  come back to the host, and each is logged in :data:`TRANSFERS`;
* ufuncs and operators take device arrays and scalars only: a
  ``numpy.ndarray`` operand (any ndim, 0-d included) or a list raises
  ``TypeError``, from either side (``d + h`` and ``h + d``);
* NumPy ufuncs called on device arrays dispatch to CuPy (``__array_ufunc__``,
  method ``__call__`` only: ``np.add.reduce(d)`` raises ``TypeError``);
* NumPy functions dispatch through NEP 18 (``__array_function__``) to the
  function of the same name in this module, when it has one; otherwise NumPy
  raises ``TypeError`` (as it does for a function CuPy lacks);
* reductions and integer indexing return 0-d device arrays, never NumPy scalars;
* a NumPy scalar operand whose dtype would change the result dtype
  (``float32_array * np.float64(2)``) raises ``TypeError``: NumPy 2 (NEP 50)
  and CuPy 14 promote to float64, CuPy 13 keeps float32 (value-based casting),
  so such code gives different dtypes on different CuPy versions;
* ``cupy.concatenate`` and friends accept device arrays only;
* :func:`fuse` runs a function under the rules of CuPy's fusion tracer
  (``cupy/_core/fusion.pyx``): arguments are device arrays, Python scalars or
  ``None`` (a NumPy array or NumPy scalar raises ``TypeError``); inside, only
  operators (in-place ones too), ``.astype``, ``.copy``, ``[...] =``, this
  module's ufuncs and at most one ``sum`` work: a NumPy function, indexing,
  ``.shape`` and other attributes, reductions as methods, ``@``, creation
  functions and any conversion to the host raise ``TypeError`` (and, stricter
  than CuPy, ``where``). Each fused call is counted in :data:`FUSED_CALLS`
  under its kernel name.

Basic slices are views (writes are visible in the base array), as in CuPy.
Assigning a NumPy array into a device array is allowed only as CuPy allows it
without a kernel, ``d[:] = h`` with the same shape and dtype (a logged copy);
indexing with a NumPy array raises here (keep index arrays on the device),
which is stricter than CuPy.

What it cannot emulate: asynchronous execution and the cost of a transfer
or of a synchronisation, GPU rounding (fused multiply-add, within a fused
kernel too; other reduction orders; cuBLAS), CuPy's undefined results for
duplicate indices in ``__setitem__`` and wrap-around of out-of-bounds
indices, kernel compilation, memory limits, streams and several devices.
The arithmetic is NumPy's, so a backend run on it gives NumPy's bits.

Use :func:`install` (e.g. from a pytest fixture with ``monkeypatch``) to make
``import cupy`` return this module with one fake CUDA device.
"""

from __future__ import annotations

import builtins as _builtins
import functools
import sys
import types
from collections import Counter

import numpy as _np

#: Every device <-> host copy: ``(direction, nbytes, shape, what)`` with direction
#: ``"h2d"`` or ``"d2h"``.
TRANSFERS: list[tuple[str, int, tuple, str]] = []

__version__ = "0.0-strict-stand-in"

#: Calls of fused functions by kernel name: what CuPy would launch as one kernel each.
FUSED_CALLS: Counter = Counter()

# Inside a fused function: ``reductions`` counts the ``sum`` calls traced so far.
_fusion = types.SimpleNamespace(active=False, reductions=0)

_SCALARS = (bool, int, float, complex, _np.generic)


def transfer_counts() -> Counter:
    """``Counter`` of the logged transfers by direction (``"h2d"``, ``"d2h"``)."""
    return Counter(direction for direction, *_ in TRANSFERS)


def _log(direction: str, a: _np.ndarray, what: str) -> None:
    TRANSFERS.append((direction, a.nbytes, a.shape, what))


def _not_while_fusing(what: str) -> None:
    """Raise ``TypeError`` if a fused function's body uses ``what``, which CuPy cannot trace."""
    if _fusion.active:
        raise TypeError(f"strict_cupy: {what} is not supported inside cupy.fuse")


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _wrap(result):
    """A device array from a NumPy result (0-d for a NumPy scalar, as CuPy returns)."""
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, _np.generic):
        result = _np.asarray(result)
    if not isinstance(result, _np.ndarray):
        raise TypeError(f"strict_cupy: unexpected result type {type(result)}")
    return ndarray(result)


def _operand(x):
    """The NumPy value behind one ufunc operand, or ``TypeError`` as CuPy raises it."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _SCALARS):
        return x
    raise _unsupported(x)  # numpy.ndarray (implicit host -> device), list, ...


def _check_numpy_scalars(name, raw):
    """Refuse a NumPy scalar whose dtype changes the result dtype (CuPy-version dependent)."""
    if not _builtins.any(isinstance(x, _np.generic) for x in raw):
        return
    arrays = [x for x in raw if isinstance(x, _np.ndarray)]
    if not arrays:
        return
    weak = [x.item() if isinstance(x, _np.generic) else x for x in raw]
    strong, value_based = _np.result_type(*raw), _np.result_type(*weak)
    if strong != value_based:
        raise TypeError(
            f"strict_cupy: {name} of a {arrays[0].dtype} array with a NumPy scalar gives "
            f"{strong} under NumPy 2 / CuPy 14 but {value_based} under CuPy 13; use a Python "
            "scalar or an array of the intended dtype"
        )


def _ufunc_call(uf, *inputs, out=None, **kwargs):
    """``cupy.<ufunc>(*inputs)``: device arrays and scalars only, at least one array."""
    if uf.__name__ not in _UFUNCS:
        raise TypeError(f"strict_cupy: ufunc {uf.__name__} is not emulated")
    if uf.__name__ == "matmul":
        _not_while_fusing("matmul (@)")
    raw = [_operand(x) for x in inputs]
    if not _builtins.any(isinstance(x, _np.ndarray) for x in raw) and out is None:
        # cupy.add(1.0, 2.0) works in CuPy and gives a 0-d device array
        raw = [_np.asarray(x) for x in raw]
    _check_numpy_scalars(uf.__name__, raw)
    if out is not None:
        if isinstance(out, tuple):
            (out,) = out
        if not isinstance(out, ndarray):
            raise TypeError(f"Output array must be a cupy.ndarray, got {type(out)}")
        uf(*raw, out=out._a, **kwargs)
        return out
    return _wrap(uf(*raw, **kwargs))


class ndarray:  # CuPy's name
    """A device array: a NumPy array that only CuPy's operations may touch."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, _np.ndarray):
            raise TypeError("strict_cupy.ndarray wraps a numpy.ndarray; use cupy.asarray")
        self._a = a

    # --- attributes ---------------------------------------------------------
    # A fused function sees only dtype and ndim (CuPy's _FusionVarArray).
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    shape = property(lambda self: self._traced("shape"))
    size = property(lambda self: self._traced("size"))
    itemsize = property(lambda self: self._traced("itemsize"))
    nbytes = property(lambda self: self._traced("nbytes"))
    strides = property(lambda self: self._traced("strides"))
    T = property(lambda self: ndarray(self._traced("T")))

    def _traced(self, attribute):
        _not_while_fusing(f"the attribute .{attribute}")
        return getattr(self._a, attribute)

    @property
    def base(self):
        _not_while_fusing("the attribute .base")
        return None if self._a.base is None else ndarray(self._a.base)

    # --- no implicit conversion to the host ---------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def get(self, stream=None, order="C", out=None):
        """Copy to the host (logged)."""
        _not_while_fusing(".get()")
        _log("d2h", self._a, "get")
        a = _np.array(self._a, order=order)
        if out is not None:
            out[...] = a
            return out
        return a

    def set(self, arr, stream=None):
        """Copy a host array of the same shape and dtype into this one (logged)."""
        _not_while_fusing(".set()")
        if not isinstance(arr, _np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        _log("h2d", arr, "set")
        self._a[...] = arr

    def _to_scalar(self, what):
        _not_while_fusing(f"{what}() of an array (Can't cast to bool/scalar)")
        _log("d2h", self._a, what)
        return self._a

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._to_scalar("item").item()

    def tolist(self):
        return self._to_scalar("tolist").tolist()

    def __float__(self):
        return float(self._to_scalar("float"))

    def __int__(self):
        return int(self._to_scalar("int"))

    def __complex__(self):
        return complex(self._to_scalar("complex"))

    def __bool__(self):
        return bool(self._to_scalar("bool"))

    def __repr__(self):
        return f"strict_cupy.{self._a!r}"  # no transfer logged: only for messages

    __str__ = __repr__

    def __len__(self):
        _not_while_fusing("len()")
        return len(self._a)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # --- NumPy protocols ------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _not_while_fusing(f"NumPy's ufunc np.{ufunc.__name__} (use the CuPy module's)")
        if method != "__call__":
            return NotImplemented  # CuPy: no reduce/accumulate/at through NumPy
        if ufunc.__name__ not in _UFUNCS:
            return NotImplemented
        return _ufunc_call(ufunc, *inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        _not_while_fusing(f"NumPy's function np.{func.__name__}")
        impl = _FUNCTIONS.get(func.__name__) if func.__module__ == "numpy" else None
        if impl is None:
            return NotImplemented  # NumPy raises TypeError: CuPy has no such function here
        for t in types_:
            if t not in (ndarray, _np.ndarray):
                return NotImplemented
        return impl(*args, **kwargs)

    # --- indexing: views for slices, as in CuPy --------------------------------
    @staticmethod
    def _key(key):
        def one(k):
            if isinstance(k, ndarray):
                return k._a
            if isinstance(k, _np.ndarray):
                raise TypeError(
                    "strict_cupy: indexing a device array with a numpy.ndarray "
                    "(an implicit host -> device copy); put the index on the device"
                )
            return k

        return tuple(one(k) for k in key) if isinstance(key, tuple) else one(key)

    def __getitem__(self, key):
        _not_while_fusing("indexing")
        return _wrap(self._a[self._key(key)])

    def __setitem__(self, key, value):
        if not (key is Ellipsis or (isinstance(key, slice) and key == slice(None))):
            _not_while_fusing("indexing other than [...] and [:]")
        if isinstance(value, _np.ndarray):
            whole = isinstance(key, slice) and key == slice(None)
            if not (whole and value.shape == self.shape and value.dtype == self.dtype):
                raise TypeError(
                    "strict_cupy: assigning a numpy.ndarray into a device array needs "
                    "a[:] = host with the same shape and dtype (or cupy.asarray)"
                )
            _log("h2d", value, "setitem")
            self._a[...] = value
            return
        self._a[self._key(key)] = _operand(value)

    # --- methods ---------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        _not_while_fusing(".reshape()")
        return ndarray(self._a.reshape(*shape, order=order))

    def ravel(self, order="C"):
        _not_while_fusing(".ravel()")
        return ndarray(self._a.ravel(order))

    def transpose(self, *axes):
        _not_while_fusing(".transpose()")
        return ndarray(self._a.transpose(*axes))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return ndarray(self._a.astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return ndarray(self._a.copy(order))

    def fill(self, value):
        _not_while_fusing(".fill()")
        self._a.fill(_operand(value))

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("sum", self, axis, dtype, out, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("mean", self, axis, dtype, out, keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return _reduce("max", self, axis, None, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return _reduce("min", self, axis, None, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return _reduce("any", self, axis, None, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return _reduce("all", self, axis, None, out, keepdims)

    def dot(self, b, out=None):
        _not_while_fusing(".dot()")
        return dot(self, b, out)


def _reduce(name, a, axis, dtype, out, keepdims):
    _not_while_fusing(f"the method .{name}() (CuPy traces the function cupy.sum only)")
    if out is not None:
        raise TypeError("strict_cupy: out= of reductions is not emulated")
    kw = {"axis": axis, "keepdims": keepdims}
    if dtype is not None:
        kw["dtype"] = dtype
    return _wrap(getattr(a._a, name)(**kw))


# --- operators: every one goes through the ufunc rules above --------------------
def _binary(uf):
    def op(self, other):
        return _ufunc_call(uf, self, other)

    def rop(self, other):
        return _ufunc_call(uf, other, self)

    def iop(self, other):
        return _ufunc_call(uf, self, other, out=self)

    return op, rop, iop


for _name, _uf in {
    "add": _np.add, "sub": _np.subtract, "mul": _np.multiply, "truediv": _np.true_divide,
    "floordiv": _np.floor_divide, "mod": _np.remainder, "pow": _np.power,
    "matmul": _np.matmul, "and": _np.bitwise_and, "or": _np.bitwise_or,
    "xor": _np.bitwise_xor, "lshift": _np.left_shift, "rshift": _np.right_shift,
}.items():
    _op, _rop, _iop = _binary(_uf)
    setattr(ndarray, f"__{_name}__", _op)
    setattr(ndarray, f"__r{_name}__", _rop)
    setattr(ndarray, f"__i{_name}__", _iop)

for _name, _uf in {"lt": _np.less, "le": _np.less_equal, "gt": _np.greater,
                   "ge": _np.greater_equal, "eq": _np.equal, "ne": _np.not_equal}.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf)[0])

for _name, _uf in {"neg": _np.negative, "pos": _np.positive, "abs": _np.absolute,
                   "invert": _np.invert}.items():
    setattr(ndarray, f"__{_name}__", lambda self, _uf=_uf: _ufunc_call(_uf, self))

ndarray.__module__ = "cupy"  # what reference.array_module() looks at, like CuPy's own class


# --- module functions -------------------------------------------------------------
# The ufuncs CuPy provides under these names (a subset: the ones worth having here).
_UFUNCS = {
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "remainder",
    "power", "negative", "positive", "absolute", "sign", "sqrt", "square", "reciprocal",
    "exp", "expm1", "log", "log1p", "tanh", "sin", "cos", "logaddexp", "maximum", "minimum",
    "fmax", "fmin", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "invert", "left_shift", "right_shift", "matmul", "isfinite", "isnan", "isinf",
}


def _make_ufunc(name):
    uf = getattr(_np, name)

    def f(*inputs, out=None, **kwargs):
        return _ufunc_call(uf, *inputs, out=out, **kwargs)

    f.__name__ = name
    return f


def asarray(a, dtype=None, order=None):
    """Device array from host data (logged copy), or ``a`` itself if already on the device."""
    _not_while_fusing("asarray()")
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    host = _np.asarray(a, dtype=dtype, order=order)
    _log("h2d", host, "asarray")
    return ndarray(host.copy())  # a copy: device memory is never the host's


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return ndarray(_np.array(a._a, dtype=dtype, copy=copy, order=order))
    return asarray(_np.array(a, dtype=dtype, order=order))


def asnumpy(a, stream=None, order="C", out=None):
    """Host copy of a device array (logged); host data is returned as NumPy would."""
    _not_while_fusing("asnumpy()")
    if isinstance(a, ndarray):
        return a.get(stream, order, out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if _builtins.any(isinstance(a, ndarray) for a in args) else _np


def _device_only(arrays, what):
    _not_while_fusing(f"arrays {what}")
    for a in arrays:
        if not isinstance(a, ndarray):
            raise TypeError(f"Only cupy arrays can be {what}; got {type(a)}")
    return [a._a for a in arrays]


def concatenate(tup, axis=0, out=None, dtype=None):
    if out is not None:
        raise TypeError("strict_cupy: out= of concatenate is not emulated")
    return ndarray(_np.concatenate(_device_only(tup, "concatenated"), axis=axis, dtype=dtype))


def stack(tup, axis=0):
    return ndarray(_np.stack(_device_only(tup, "stacked"), axis=axis))


def dot(a, b, out=None):
    if out is not None:
        raise TypeError("strict_cupy: out= of dot is not emulated")
    return _wrap(_np.dot(*_device_only((a, b), "multiplied")))


def where(condition, x, y):
    _not_while_fusing("where()")
    return _wrap(_np.where(*(_operand(v) for v in (condition, x, y))))


def shape(a):
    return _device_only((a,), "measured")[0].shape


def _creation(name):
    make = getattr(_np, name)

    def f(*args, **kwargs):
        _not_while_fusing(f"creating an array ({name})")
        return ndarray(make(*args, **kwargs))

    f.__name__ = name
    return f


def _like(name):
    make = getattr(_np, name)

    def f(a, *args, **kwargs):
        return ndarray(make(_device_only((a,), "used as a template")[0], *args, **kwargs))

    f.__name__ = name
    return f


zeros, ones, empty, full, arange = (_creation(n) for n in ("zeros", "ones", "empty", "full",
                                                           "arange"))
zeros_like, ones_like, empty_like, full_like = (_like(n) for n in ("zeros_like", "ones_like",
                                                                   "empty_like", "full_like"))

for _name in _UFUNCS:
    globals()[_name] = _make_ufunc(_name)
abs = globals()["absolute"]


def _reduction(method):
    def f(a, *args, **kwargs):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        if _fusion.active:
            if method != "sum" or _fusion.reductions:
                _not_while_fusing(f"{method}() after {_fusion.reductions} reductions")
            _fusion.reductions += 1
            _fusion.active = False  # the reduction itself is CuPy's
            try:
                return getattr(a, method)(*args, **kwargs)
            finally:
                _fusion.active = True
        return getattr(a, method)(*args, **kwargs)

    f.__name__ = method
    return f


# Defined last under the builtins' names; the code above calls _builtins.any etc.
sum, mean, max, min, any, all = (
    _reduction(m) for m in ("sum", "mean", "max", "min", "any", "all")
)

for _t in ("bool_", "int8", "int32", "int64", "uint8", "uint32", "uint64", "float16",
           "float32", "float64", "dtype", "newaxis", "pi", "inf", "nan"):
    globals()[_t] = getattr(_np, _t)

#: NumPy function name -> implementation, for ``__array_function__`` (NEP 18).
_FUNCTIONS = {
    "concatenate": concatenate, "stack": stack, "dot": dot, "where": where, "shape": shape,
    "zeros_like": zeros_like, "ones_like": ones_like, "empty_like": empty_like,
    "full_like": full_like, "sum": sum, "mean": mean, "max": max, "min": min, "amax": max,
    "amin": min, "any": any, "all": all,
}


# --- cupy.fuse ------------------------------------------------------------------------
_FUSE_ARGUMENTS = (ndarray, bool, int, float, complex, type(None))


def fuse(*args, kernel_name=None):
    """``cupy.fuse``: run the function once under the fusion tracer's rules (module docstring).

    As in CuPy, a call without any device array runs the plain function, and a
    fused function called inside another one is traced into it (one kernel).
    """

    def decorate(func):
        name = kernel_name or func.__name__

        @functools.wraps(func)
        def call(*arguments):
            if _fusion.active or not _builtins.any(isinstance(a, ndarray) for a in arguments):
                return func(*arguments)
            for a in arguments:
                if type(a) not in _FUSE_ARGUMENTS:
                    raise TypeError(
                        f"strict_cupy: cupy.fuse argument of type {type(a)} in {name}: pass "
                        "device arrays and Python scalars (a NumPy scalar is weak inside "
                        "a fused kernel but strong outside it)"
                    )
            _fusion.active, _fusion.reductions = True, 0
            try:
                result = func(*arguments)
            finally:
                _fusion.active = False
            results = result if isinstance(result, tuple) else (result,)
            for r in results:
                if r is not None and not isinstance(r, ndarray):
                    raise TypeError(f"Fusion function can't return {type(r)}")
            FUSED_CALLS[name] += 1
            # A fused kernel writes its results to new arrays, even one that is an argument.
            fresh = tuple(r.copy() if _builtins.any(r is a for a in arguments) else r
                          for r in results)
            return fresh if isinstance(result, tuple) else fresh[0]

        return call

    if len(args) == 1 and callable(args[0]) and kernel_name is None:
        return decorate(args[0])
    return decorate


# --- a fake CUDA runtime with one device ---------------------------------------------
class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(device):
        return {"name": b"strict-cupy stand-in (no GPU)", "totalGlobalMem": 0}

    @staticmethod
    def runtimeGetVersion():
        return 0


class _Device:
    def __init__(self, device=0):
        self.id = device

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(runtime=_Runtime(), Device=_Device)


def install(monkeypatch):
    """Make ``import cupy`` return this module (undone with ``monkeypatch``); clear the log."""
    TRANSFERS.clear()
    FUSED_CALLS.clear()
    monkeypatch.setitem(sys.modules, "cupy", sys.modules[__name__])
    return sys.modules[__name__]
