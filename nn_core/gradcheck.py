"""Finite-difference gradient checks: of a model's backend, and of any function.

Two entry points share one numerical routine, :func:`numerical_gradient`:

* :func:`gradcheck` checks a model: the gradient its own backend computes
  (:meth:`nn_core.MLP.loss_and_grad`: the compiled kernels for ``numba``, the
  reference on NumPy or CuPy arrays, in the model's dtype) against finite
  differences of the float64 reference loss (:func:`nn_core.reference.loss`).
  With ``reference=True`` the analytic side is the float64 reference
  (:func:`nn_core.reference.loss_and_grad`) instead: the check of the
  backward *formulas* alone, independent of any backend.
* :func:`input_gradcheck` checks a model's gradient with respect to its
  *inputs* (:meth:`nn_core.MLP.input_gradient`, ``dz/dX`` or ``dY/dX``, what
  explanations are built on) against finite differences of the float64
  reference forward pass.
* :func:`check_gradients` checks any scalar function ``f`` and its
  hand-written gradient ``grad_f`` at a point ``x`` (a new activation or
  loss, before it joins the tables).

Both return a :class:`GradcheckReport`: the largest error, where it is
(layer, ``"W"`` or ``"b"``, index), the largest error of each parameter
array, and whether it is within the tolerance of the analytic gradient's
dtype (:data:`TOLERANCES`).

Kinks. At a point where the activation has no derivative (ReLU's ``Z = 0``,
:attr:`nn_core.activations.Activation.kinks`), the loss has a corner, and a
central difference whose steps straddle it measures the average of the two
slopes, not the derivative. A fresh network sits on such points: with zero
biases, a row whose units in one layer are all off gives the next layer
``Z = b = 0`` exactly. :func:`kink_crossings` finds, for every entry, whether
its steps ``+-h`` move any pre-activation across a kink; such entries are not
compared, but counted and listed (:attr:`GradcheckReport.kinks`).

The numbers: for every parameter ``theta_k`` the central difference

``D(h) = (L(theta + h e_k) - L(theta - h e_k)) / (2 h)``

has an error of ``O(h^2)`` (a one-sided difference would be ``O(h)``). One
Richardson step, ``n_k = (4 D(h/2) - D(h)) / 3``, cancels the ``h^2`` term
and leaves ``O(h^4)``, so ``h`` can be large enough (``1e-4``) that the
rounding error of ``L`` divided by ``2h`` stays near ``1e-12``; plain central
differences must trade one error against the other and stall near ``1e-10``,
too coarse for gradients of size ``1e-5`` at a tolerance of ``1e-6``.

Rounding noise. Each evaluation of ``L`` is off by a few units of roundoff
``u |L|`` (``u = 2^-53``), and ``n_k`` divides that by ``h``: its error,
a few ``1e-12`` for ``|L| ~ 0.7`` at the default ``h``, is bounded by
``noise = c u |L| / h`` (:func:`rounding_noise`, ``c`` = :data:`NOISE_FACTOR`;
``2.3e-11`` there). No comparison can be finer than that, so the floor of the
relative error is raised, where needed, to ``noise / tolerance``: below it the
check is the absolute ``|a_k - n_k| < noise`` (docs/math.md, section 10).

The numerical side always runs in float64 on the reference code, which has
no fastmath: in float32 the rounding error of ``L``, about ``1e-7 |L|``,
divided by ``2h`` would swamp any real discrepancy. A float32 model's
analytic gradient is still computed in float32 by its backend, so it is
judged against a float32 tolerance (docs/math.md, section 10, derives it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Imported under another name: ``reference`` is also gradcheck's keyword argument.
from . import reference as _reference
from .activations import ACTIVATIONS
from .losses import sample_scale
from .validation import as_number


class Tolerance(NamedTuple):
    """Pass bound and floor of the relative error ``|a - n| / max(|a| + |n|, floor)``."""

    tolerance: float
    floor: float


#: Analytic gradient's dtype -> default :class:`Tolerance`. float64: the
#: numerical gradient's own noise (about ``1e-12``) allows ``1e-6``, the floor
#: raised above ``1e-6`` where that noise requires it (:func:`rounding_noise`).
#: float32: every rounding of the backend's float32 arithmetic (unit roundoff
#: ``2^-24``) enters the analytic gradient; the derivation and the measured
#: margins are in docs/math.md, section 10.
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(1e-6, 1e-6),
    "float32": Tolerance(1e-4, 1e-2),
}

#: Unit roundoff of float64, in which every numerical gradient is computed.
UNIT_ROUNDOFF = 2.0**-53

#: ``c`` of the bound ``c u |L| / h`` on the rounding error of :func:`numerical_gradient`:
#: ``3 kappa``, with 3 from the Richardson combination (its weights ``4/3`` on ``D(h/2)``
#: and ``1/3`` on ``D(h)`` sum the roundings of four evaluations to ``3 kappa u |L| / h``
#: at worst) and ``kappa = 10`` for each evaluation's rounding in units of ``u |L|``. On
#: 159,000 entries of fresh and trained float64 networks (5 activations, both outputs, L2,
#: 5 to 500 rows, widths up to 75-64-64) the error measured up to ``11.8 u |L| / h``
#: (a median of 1.1, the same for h from 3e-5 to 3e-4): ``c = 30`` has a margin of 2.5.
#: docs/math.md, section 10.
NOISE_FACTOR = 30.0


class Block(NamedTuple):
    """The check of one array: a layer's ``W`` or ``b``, or ``check_gradients``' ``x``.

    Attributes
    ----------
    layer : int or None
        Index into ``model.params``: layer ``l`` holds ``W_{l+1}, b_{l+1}`` of
        docs/math.md. ``None`` for :func:`check_gradients`.
    name : {"W", "b", "x", "X"}
        ``"X"``: the inputs (:func:`input_gradcheck`).
    shape : tuple of int
        Shape of the array.
    max_error : float
        Largest relative error over the array's compared entries (NaN if any is NaN;
        0 if every entry crossed a kink).
    index : tuple of int
        Index of that entry in the array (``()`` if there is none).
    analytic, numeric : float
        The two gradients at that entry.
    kinks : int
        How many of the array's entries crossed a kink, and were not compared.
    """

    layer: int | None
    name: str
    shape: tuple[int, ...]
    max_error: float
    index: tuple[int, ...]
    analytic: float
    numeric: float
    kinks: int = 0


class Kink(NamedTuple):
    """An entry whose finite-difference steps crossed a kink: listed, not compared.

    Attributes
    ----------
    layer : int or None
        As in :class:`Block`.
    name : {"W", "b", "X"}
        The array.
    index : tuple of int
        The entry in that array.
    analytic, numeric : float
        The two gradients there (the numerical one averages the slopes on both sides).
    """

    layer: int | None
    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float

    def __str__(self) -> str:
        return _at(self.layer, self.name, self.index)


def _at(layer: int | None, name: str, index: tuple[int, ...]) -> str:
    """``"layer 1 b[3]"``, or ``"x[2]"`` without a layer."""
    at = f"{name}[{', '.join(map(str, index))}]"
    return at if layer is None else f"layer {layer} {at}"


def _sort_key(error: float) -> float:
    """Order errors with NaN above everything: a NaN gradient is the worst possible."""
    return math.inf if math.isnan(error) else error


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """The result of a gradient check, located.

    ``float(report)`` is :attr:`max_error`, and a report compares with a
    number as its ``max_error`` does (``report < 1e-6``), so code written
    for the bare float the check used to return keeps working. ``str(report)``
    is a table, one row per array.

    Attributes
    ----------
    blocks : tuple of Block
        One per checked array, in ``params`` order (``W_0, b_0, W_1, ...``).
    tolerance, floor : float
        The pass bound of :attr:`max_error` and the floor of the relative error.
    dtype : str
        dtype of the analytic gradient ("float32" or "float64").
    backend : str
        What computed the analytic gradient: a backend name, ``"reference"``
        (``gradcheck(..., reference=True)``), ``"input gradient"``
        (:func:`input_gradcheck`) or ``"function"`` (:func:`check_gradients`).
    h : float
        Largest central-difference step.
    kinks : tuple of Kink
        The entries whose steps ``+-h`` moved a pre-activation across a kink of the
        activation (:func:`kink_crossings`), in ``blocks`` order: excluded from
        :attr:`max_error` and :attr:`ok`, since no derivative exists there to compare.
    noise : float
        Bound on the numerical gradient's rounding error, ``c u |L| / h``
        (:func:`rounding_noise`); :attr:`floor` is at least ``noise / tolerance``, so
        that below the floor an entry passes if ``|a - n| < noise``. 0 if not computed.
    """

    blocks: tuple[Block, ...]
    tolerance: float
    floor: float
    dtype: str
    backend: str
    h: float
    kinks: tuple[Kink, ...] = ()
    noise: float = 0.0

    #: How many crossed entries ``str(report)`` names (all are in :attr:`kinks`).
    SHOWN_KINKS = 8

    @property
    def worst(self) -> Block:
        """The block that holds the largest error."""
        return max(self.blocks, key=lambda b: _sort_key(b.max_error))

    @property
    def max_error(self) -> float:
        """Largest relative error over every compared entry (NaN if any is NaN)."""
        return self.worst.max_error

    @property
    def where(self) -> tuple[int | None, str, tuple[int, ...]]:
        """``(layer, "W" or "b", index)`` of the worst entry; a function's is ``(None, "x", i)``."""
        b = self.worst
        return b.layer, b.name, b.index

    @property
    def per_layer(self) -> dict[tuple[int | None, str], float]:
        """``{(layer, "W" or "b"): largest error in that array}``."""
        return {(b.layer, b.name): b.max_error for b in self.blocks}

    @property
    def ok(self) -> bool:
        """Whether :attr:`max_error` is below :attr:`tolerance` (never for NaN)."""
        return bool(self.max_error < self.tolerance)

    def __float__(self) -> float:
        return float(self.max_error)

    # Comparisons with numbers, as the bare float the check used to return.
    def __lt__(self, other):
        return self.max_error < other if isinstance(other, numbers.Real) else NotImplemented

    def __le__(self, other):
        return self.max_error <= other if isinstance(other, numbers.Real) else NotImplemented

    def __gt__(self, other):
        return self.max_error > other if isinstance(other, numbers.Real) else NotImplemented

    def __ge__(self, other):
        return self.max_error >= other if isinstance(other, numbers.Real) else NotImplemented

    def __str__(self) -> str:
        """A table, one row per array (a ``kinks`` column when an entry crossed one), the
        crossed entries, and the verdict last."""
        rows = [("layer", "array", "shape", "max error", "index", "analytic", "numeric")]
        for b in self.blocks:
            compared = (f"{b.max_error:.1e}", ", ".join(map(str, b.index)),
                        f"{b.analytic:+.8e}", f"{b.numeric:+.8e}")
            rows.append((
                "-" if b.layer is None else str(b.layer), b.name,
                "x".join(map(str, b.shape)) or "()",
                *(compared if b.index else ("-",) * 4),  # no index: every entry crossed a kink
            ))
        if self.kinks:
            rows = [(*rows[0], "kinks")] + [(*r, str(b.kinks))
                                            for r, b in zip(rows[1:], self.blocks, strict=True)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        # The floor, and the noise when it is what set the floor (c u |L| / h / tolerance).
        raised = self.noise > 0 and self.floor <= self.noise / self.tolerance * (1 + 1e-9)
        noise = f" (noise {self.noise:.2g} / tolerance)" if raised else ""
        lines = [
            f"gradient check: {self.backend} ({self.dtype}) vs float64 central differences, "
            f"h={self.h:g}, floor={self.floor:.3g}{noise}"
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        if self.kinks:
            n = len(self.kinks)
            shown = ", ".join(map(str, self.kinks[: self.SHOWN_KINKS]))
            more = f", and {n - self.SHOWN_KINKS} more" if n > self.SHOWN_KINKS else ""
            lines.append(f"crossed a kink, not compared: {n} entr{'y' if n == 1 else 'ies'} "
                         f"({shown}{more})")
        verdict = "ok" if self.ok else "FAILED"
        lines.append(f"max error {self.max_error:.1e} at {_at(*self.where)}, "
                     f"tolerance {self.tolerance:g}: {verdict}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"GradcheckReport(max_error={self.max_error:.3g}, where={self.where}, "
            f"ok={self.ok}, tolerance={self.tolerance:g}, dtype={self.dtype!r}, "
            f"backend={self.backend!r}, kinks={len(self.kinks)})"
        )


# --------------------------------------------------------------------------- numerics


def numerical_gradient(f: Callable[[np.ndarray], float], x, h: float = 1e-4) -> np.ndarray:
    """Central differences with one Richardson step, ``(4 D(h/2) - D(h)) / 3``, of every entry.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``, a scalar function of an array shaped like ``x``,
        evaluated in float64. It is called with one array that is nudged in
        place between calls (``4 x.size`` calls), so it must not keep it.
    x : array_like of any shape
        The point; copied to float64.
    h : float
        Largest step (``h/2`` is the other).

    Returns
    -------
    array of the shape of ``x``, float64
    """
    # A C-ordered copy, nudged one entry at a time through a flat view (a
    # Fortran-ordered one would make reshape copy, and the nudges would be lost).
    x = np.array(x, dtype=np.float64, order="C")
    flat = x.reshape(-1)

    def central_difference(k: int, step: float) -> float:
        original = flat[k]
        flat[k] = original + step
        up = float(f(x))
        flat[k] = original - step
        down = float(f(x))
        flat[k] = original
        return (up - down) / (2 * step)

    out = np.empty(flat.shape[0])
    for k in range(flat.shape[0]):
        out[k] = (4 * central_difference(k, h / 2) - central_difference(k, h)) / 3
    return out.reshape(x.shape)


def pieces(Z, kinks: tuple[float, ...]) -> np.ndarray:
    """Which piece of the activation each pre-activation is on: the number of ``kinks`` below it.

    ReLU (one kink, at 0) has two pieces, ``Z <= 0`` (piece 0) and ``Z > 0`` (piece 1),
    the same split as its backward rule's ``H > 0``.
    """
    piece = np.zeros(np.shape(Z), dtype=np.int8)
    for c in kinks:
        piece += Z > c
    return piece


def kink_crossings(pieces_at: Callable[[np.ndarray], list], x, h: float = 1e-4) -> np.ndarray:
    """Which entries ``x_k`` of ``x``, nudged to ``x_k - h`` and ``x_k + h``, change a piece.

    The central differences of :func:`numerical_gradient` evaluate the function
    within ``[x - h e_k, x + h e_k]``; if a pre-activation is on different pieces of
    its activation at the two ends, the segment crosses a kink, where no derivative
    exists, and the difference averages the slopes on both sides. For a network of
    piecewise-linear activations the ends tell all: on a segment where no earlier
    layer changes piece, each pre-activation is linear in ``x_k``, so it crosses a
    kink inside the segment if and only if its two ends are on different pieces.

    Parameters
    ----------
    pieces_at : callable
        ``pieces_at(x) -> list of integer arrays``: the piece of every
        pre-activation (:func:`pieces` of each hidden layer's ``Z``). It is called
        with one array that is nudged in place between calls (``2 x.size`` calls).
    x : array_like of any shape
        The point; copied to float64.
    h : float
        The largest step of the central differences.

    Returns
    -------
    bool array of the shape of ``x``
        True where the steps cross a kink.
    """
    x = np.array(x, dtype=np.float64, order="C")  # nudged through a flat view, as above
    flat = x.reshape(-1)
    crossed = np.zeros(flat.shape[0], dtype=bool)
    for k in range(flat.shape[0]):
        original = flat[k]
        flat[k] = original + h
        up = pieces_at(x)
        flat[k] = original - h
        down = pieces_at(x)
        flat[k] = original
        crossed[k] = any(not np.array_equal(u, d) for u, d in zip(up, down, strict=True))
    return crossed.reshape(x.shape)


def _crossings(activation: str, layer_Z: Callable[[np.ndarray], list], x, h: float):
    """:func:`kink_crossings` of ``x`` for a network whose hidden layers' ``Z`` are
    ``layer_Z(x)``, or None if its activation has no kink (nothing to look for)."""
    kinks = ACTIVATIONS[activation].kinks
    if not kinks:
        return None
    return kink_crossings(lambda x_: [pieces(Z, kinks) for Z in layer_Z(x_)], x, h)


def rounding_noise(scale: float, h: float) -> float:
    """Bound on the rounding error of :func:`numerical_gradient`: ``c u |L| / h``.

    Each evaluation ``L(theta +- s e_k)`` is off by ``delta``, ``|delta| <= kappa u |L|``
    (``u`` = :data:`UNIT_ROUNDOFF`). ``D(s)`` divides the difference of two by ``2 s``,
    so ``D(h/2)`` is off by at most ``2 kappa u |L| / h`` and ``D(h)`` by ``kappa u |L| / h``,
    and ``n_k = (4 D(h/2) - D(h)) / 3`` by ``(8 + 1) / 3 kappa u |L| / h = 3 kappa u |L| / h``.
    The truncation error, ``O(h^4 L^(5))``, is far below it at ``h = 1e-4``.

    Parameters
    ----------
    scale : float
        ``|L|``, the size of the function differentiated, at the point (for a sum with
        terms of both signs, the sum of their sizes: rounding follows them, not the sum).
    h : float
        Largest central-difference step.

    Returns
    -------
    float
        ``c u |scale| / h``, ``c = 3 kappa`` = :data:`NOISE_FACTOR`.
    """
    return NOISE_FACTOR * UNIT_ROUNDOFF * abs(float(scale)) / h


def relative_errors(analytic, numeric, floor: float) -> np.ndarray:
    """``|a - n| / max(|a| + |n|, floor)``, entry by entry (float64).

    The floor turns the test into an absolute one for gradients below it:
    the numerical gradient carries rounding noise (:func:`rounding_noise`, a few
    ``1e-12``; a float32 analytic one far more), which relative to a gradient of
    ``1e-7`` (or of exactly 0, a dead ReLU unit) would be large for no fault of
    the backward pass. The checks raise the floor to at least ``noise / tolerance``.
    """
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)


def _block(layer, name, analytic, numeric, floor, crossed=None) -> tuple[Block, list[Kink]]:
    """The :class:`Block` of one array, and its entries that crossed a kink (``crossed``,
    a boolean array of its shape, or None). A crossed entry is not compared, unless its
    error is NaN: a NaN gradient is a fault wherever it is."""
    err = relative_errors(analytic, numeric, floor)
    a, n = np.reshape(analytic, -1), np.reshape(numeric, -1)
    skip = np.zeros(err.size, dtype=bool) if crossed is None else np.reshape(crossed, -1).copy()
    skip &= ~np.isnan(err.reshape(-1))
    entries = [tuple(int(i) for i in np.unravel_index(k, err.shape)) for k in np.flatnonzero(skip)]
    kinks = [Kink(layer, name, index, float(a[k]), float(n[k]))
             for index, k in zip(entries, np.flatnonzero(skip), strict=True)]
    shape = tuple(err.shape)
    if skip.all():
        return Block(layer, name, shape, 0.0, (), math.nan, math.nan, len(kinks)), kinks
    # argmax with NaN ranked first, so a NaN gradient is the one reported; crossed entries last.
    ranked = np.where(np.isnan(err.reshape(-1)), np.inf, err.reshape(-1))
    flat = int(np.argmax(np.where(skip, -np.inf, ranked)))
    index = tuple(int(i) for i in np.unravel_index(flat, err.shape))
    return (Block(layer, name, shape, float(err.reshape(-1)[flat]), index, float(a[flat]),
                  float(n[flat]), len(kinks)), kinks)


def _tolerance(dtype, tolerance: float | None, floor: float | None,
               noise: float) -> tuple[str, float, float]:
    """The dtype's name, its tolerance and its floor (defaults overridden by whatever the
    caller gave), the floor raised to ``noise / tolerance``: the numerical gradient's
    rounding noise alone never uses up the tolerance."""
    name = np.dtype(dtype).name
    default = TOLERANCES.get(name, TOLERANCES["float32"])  # anything narrower: float32's
    tolerance = default.tolerance if tolerance is None else float(tolerance)
    floor = default.floor if floor is None else float(floor)
    return name, tolerance, max(floor, noise / tolerance)


# --------------------------------------------------------------------------- the checks


def _check_steps(h, floor, tolerance) -> float:
    """``h`` as a float, after checking that ``h``, ``floor`` and ``tolerance`` (``None``:
    the dtype's default) are finite numbers > 0."""
    h = as_number(h, "h", strict=True)
    for name, value in (("floor", floor), ("tolerance", tolerance)):
        if value is not None:
            as_number(value, name, strict=True)
    return h


def gradcheck(
    model,
    X,
    y,
    sample_weight=None,
    pos_weight: float = 1.0,
    l2: float = 0.0,
    h: float = 1e-4,
    floor: float | None = None,
    *,
    reference: bool = False,
    tolerance: float | None = None,
) -> GradcheckReport:
    """Check a model's gradient against finite differences of the float64 reference loss.

    ``err_k = |a_k - n_k| / max(|a_k| + |n_k|, floor)`` for every weight and
    bias, with ``a`` the analytic gradient and ``n`` the numerical one
    (:func:`numerical_gradient` of :func:`nn_core.reference.loss`, float64), and
    ``floor >= c u |L| / (h tolerance)``: the numerical gradient's rounding noise
    alone cannot fail the check.

    Parameters
    ----------
    model : nn_core.MLP
        Any backend and dtype; not modified.
    X : array of shape (n, n_inputs)
    y : array of shape (n,)
    sample_weight : array of shape (n,), optional
    pos_weight, l2 : float
        As in :meth:`nn_core.MLP.loss_and_grad`.
    h : float
        Largest central-difference step (``h/2`` is the other).
    floor : float, optional
        Lower bound of the denominator; default from :data:`TOLERANCES` for
        the analytic gradient's dtype (``1e-6`` for float64, ``1e-2`` for float32).
        Raised to ``noise / tolerance`` where the numerical gradient's rounding noise,
        ``noise = c u |L| / h`` (:func:`rounding_noise`), needs it: about ``2.3e-5`` for a
        loss of 0.7 at the float64 defaults. ``report.floor`` is the floor used.
    reference : bool
        ``False`` (default): the analytic gradient is ``model.loss_and_grad``,
        computed by the model's backend in the model's dtype, and the numerical
        one differentiates the loss of the inputs as that backend sees them
        (``X``, ``y`` and the sample weights rounded to the model's dtype).
        ``True``: the analytic gradient is the float64 reference's, whatever the
        model's backend and dtype (the check of the backward formulas alone).
    tolerance : float, optional
        Pass bound of :attr:`GradcheckReport.ok`; default from :data:`TOLERANCES`
        (``1e-6`` for float64, ``1e-4`` for float32).

    Returns
    -------
    GradcheckReport
        ``float(report)`` is ``max_k err_k`` over the compared entries; ``report.where``
        locates it. With a kinked activation (ReLU, leaky ReLU), an entry whose steps
        ``+-h`` move a hidden pre-activation across a kink (a fresh network's zero biases
        put whole rows at ``Z = 0``) is not compared but listed in ``report.kinks``
        (:func:`kink_crossings`).

    Examples
    --------
    >>> report = gradcheck(m, X[:20], y[:20])  # doctest: +SKIP
    >>> report.ok, report.where  # doctest: +SKIP
    (True, (0, 'W', (12, 3)))
    """
    if not all(hasattr(model, a) for a in ("_check_Xy", "theta", "unflatten")):
        raise TypeError(f"model must be an nn_core.MLP, got {type(model).__name__}")
    h = _check_steps(h, floor, tolerance)
    Xd, yd, swd = model._check_Xy(X, y, sample_weight)
    r = _reference.rules(model.activation, model.output)
    l2 = model._check_scalar("l2", l2)
    # Validated as model.loss_and_grad will (which refuses pos_weight for identity output);
    # the reference mode keeps its leniency there, but not for NaN, infinity or text.
    pos_weight = (model._check_scalar("pos_weight", pos_weight) if reference
                  else model._check_pos_weight(pos_weight))
    if reference:
        # Today's float64 check: the data as given, in float64.
        X64 = np.asarray(X, dtype=np.float64)
        y64 = np.asarray(y, dtype=np.float64)
        sw64 = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        s64 = sample_scale(y64, sw64, pos_weight)
    else:
        # The function the backend differentiates: its inputs in the model's dtype.
        X64, y64 = Xd.astype(np.float64), yd.astype(np.float64)
        s64 = sample_scale(yd, swd, pos_weight).astype(np.float64)
    theta = model.theta.astype(np.float64)

    def loss_at(t: np.ndarray) -> float:
        params = model.unflatten(t)
        z = _reference.forward(params, X64, r)[3]
        return float(_reference.loss(params, z, y64, s64, r, l2))

    if reference:
        _, grads = _reference.loss_and_grad(model.unflatten(theta), X64, y64, s64, r, l2)
        dtype, backend = "float64", "reference"
    else:
        _, grads = model.loss_and_grad(Xd, yd, swd, pos_weight, l2)
        dtype, backend = model.dtype, model.backend
    numeric = model.unflatten(numerical_gradient(loss_at, theta, h))
    crossed = _crossings(model.activation,
                         lambda t: _reference.forward(model.unflatten(t), X64, r)[1], theta, h)
    crossed = [(None, None)] * len(numeric) if crossed is None else model.unflatten(crossed)
    noise = rounding_noise(loss_at(theta), h)  # every term of L is >= 0: |L| is their size
    dtype, tolerance, floor = _tolerance(dtype, tolerance, floor, noise)
    blocks, kinks = [], []
    for l, ((dW, db), (nW, nb), (cW, cb)) in enumerate(zip(grads, numeric, crossed, strict=True)):
        for name, a, n, c in (("W", dW, nW, cW), ("b", db, nb, cb)):
            block, crossings = _block(l, name, a, n, floor, c)
            blocks.append(block)
            kinks += crossings
    return GradcheckReport(tuple(blocks), tolerance, floor, dtype, backend, h, tuple(kinks),
                           noise)


def input_gradcheck(
    model,
    X,
    output: str = "logit",
    h: float = 1e-4,
    floor: float | None = None,
    *,
    tolerance: float | None = None,
) -> GradcheckReport:
    """Check a model's input gradient ``dz/dX`` (or ``dY/dX``) against finite differences.

    The analytic side is :meth:`nn_core.MLP.input_gradient` (float64 on every
    backend); the numerical side is :func:`numerical_gradient` of
    ``S(X) = sum_i z_i`` (or ``sum_i Y_i``) through the float64 reference
    forward pass. Row ``i``'s output depends on row ``i`` only, so
    ``dS/dX[i, j] = dz_i/dX[i, j]``: one scalar function checks every row.

    Parameters
    ----------
    model : nn_core.MLP
        Not modified.
    X : array of shape (n, n_inputs)
        The points (float64). An input whose steps ``+-h`` move a hidden pre-activation
        across a kink (ReLU's ``Z = 0``) is not compared but listed in ``report.kinks``.
    output : {"logit", "probability"}
        As in :meth:`nn_core.MLP.input_gradient`.
    h, floor, tolerance :
        As in :func:`gradcheck`; the float64 defaults of :data:`TOLERANCES`. The floor's
        rounding noise is that of the sum: ``c u sum_i |z_i| / h`` (or of ``Y_i``), so it
        grows with the rows: check a few.

    Returns
    -------
    GradcheckReport
        One block, ``"X"``; ``report.where`` is ``(None, "X", (row, input))``.

    Examples
    --------
    >>> from nn_core import MLP
    >>> m = MLP(3, hidden=(4,), activation="tanh", dtype="float64", backend="numpy")
    >>> input_gradcheck(m, np.linspace(-1, 1, 6).reshape(2, 3)).ok
    True
    """
    if not all(hasattr(model, a) for a in ("input_gradient", "theta", "unflatten")):
        raise TypeError(f"model must be an nn_core.MLP, got {type(model).__name__}")
    h = _check_steps(h, floor, tolerance)
    analytic = model.input_gradient(X, output)  # validates X and output
    r = _reference.rules(model.activation, model.output)
    params = model.unflatten(model.theta.astype(np.float64))

    def outputs(X_: np.ndarray) -> np.ndarray:
        z = _reference.forward(params, X_, r)[3]
        return z if output == "logit" else r.g(z)

    X64 = np.asarray(X, dtype=np.float64)
    numeric = numerical_gradient(lambda X_: float(outputs(X_).sum()), X64, h)
    crossed = _crossings(model.activation, lambda X_: _reference.forward(params, X_, r)[1], X64, h)
    # Logits of both signs: the sum rounds with the size of its terms, sum_i |z_i|.
    noise = rounding_noise(np.abs(outputs(X64)).sum(), h)
    dtype, tolerance, floor = _tolerance(np.float64, tolerance, floor, noise)
    block, kinks = _block(None, "X", analytic, numeric, floor, crossed)
    return GradcheckReport((block,), tolerance, floor, dtype, "input gradient", h, tuple(kinks),
                           noise)


def check_gradients(
    f: Callable[[np.ndarray], float],
    grad_f: Callable[[np.ndarray], np.ndarray],
    x,
    h: float = 1e-4,
    floor: float | None = None,
    *,
    tolerance: float | None = None,
) -> GradcheckReport:
    """Check a hand-written gradient ``grad_f`` of a scalar function ``f`` at the point ``x``.

    The same numerics and report as :func:`gradcheck`, for any function: a
    new activation or loss before it joins the tables, or an exercise.

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` for an array ``x`` of the shape of ``x``; it should
        compute in float64 (its finite differences are only as good as its
        rounding).
    grad_f : callable
        ``grad_f(x) -> array`` of the shape of ``x``: the gradient of ``f``.
        Its dtype picks the default tolerance (float32 results get float32's).
    x : array_like of any shape
        The point, copied to float64 for both calls. Pick a generic point:
        at a kink (ReLU at 0) no derivative exists.
    h : float
        Largest central-difference step.
    floor, tolerance : float, optional
        As in :func:`gradcheck`; defaults from :data:`TOLERANCES`. The floor's rounding
        noise is ``c u |f(x)| / h``; a function whose terms cancel (``|f(x)|`` far below
        the sum of their sizes) rounds more than that: give it a larger ``floor``.

    Returns
    -------
    GradcheckReport
        One block, ``"x"``; ``report.where`` is ``(None, "x", index into x)``.

    Examples
    --------
    >>> import numpy as np
    >>> from nn_core.activations import silu, silu_backward
    >>> z = np.linspace(-3, 3, 7)
    >>> check_gradients(lambda z: silu(z).sum(),
    ...                 lambda z: silu_backward(z, silu(z), np.ones_like(z)), z).ok
    True
    """
    h = _check_steps(h, floor, tolerance)
    x = np.array(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("x is empty: there is no gradient to check")
    analytic = np.asarray(grad_f(x.copy()))  # a copy: grad_f may not modify the point
    if analytic.shape != x.shape:
        raise ValueError(f"grad_f(x) has shape {analytic.shape}, x has shape {x.shape}")
    numeric = numerical_gradient(f, x, h)
    noise = rounding_noise(f(x.copy()), h)  # |f(x)|: f's terms are unknown here
    dtype = analytic.dtype if np.issubdtype(analytic.dtype, np.floating) else np.float64
    dtype, tolerance, floor = _tolerance(dtype, tolerance, floor, noise)
    block, _ = _block(None, "x", analytic, numeric, floor)
    return GradcheckReport((block,), tolerance, floor, dtype, "function", h, noise=noise)
