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
its step ``-h`` or ``+h`` moves any pre-activation off the piece it is on. Where
one does, the entry is compared with the one-sided difference from the other
side, which stays on the point's pieces: the slopes the backward rule takes
(:func:`pieces`). Where both do, no difference at this ``h`` is a derivative: the
entry is not compared, and an array none of whose entries could be compared makes
the verdict "not checked" (``ok`` False). All are listed
(:attr:`GradcheckReport.kinks`).

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

#: ``c`` of the same bound for a one-sided difference (:func:`numerical_gradient` with
#: ``side`` -1 or +1, where a kink lies on the other side): ``22 kappa``, 22 from its weights
#: on ``L(theta)`` and ``L(theta +- h/q e_k)``, ``q = 1, 2, 4`` (:func:`rounding_noise`), and
#: the same ``kappa = 10``. docs/math.md, section 10, has the measurements.
ONE_SIDED_NOISE_FACTOR = 220.0


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
        ``inf`` if none was compared: every entry's steps crossed a kink on both sides).
    index : tuple of int
        Index of that entry in the array (``()`` if there is none).
    analytic, numeric : float
        The two gradients at that entry.
    kinks : int
        How many of the array's entries had a step ``+-h`` cross a kink (:class:`Kink`):
        compared with a one-sided difference, except the ``unchecked`` ones.
    unchecked : int
        How many of those crossed a kink on both sides, and were not compared.
    """

    layer: int | None
    name: str
    shape: tuple[int, ...]
    max_error: float
    index: tuple[int, ...]
    analytic: float
    numeric: float
    kinks: int = 0
    unchecked: int = 0

    @property
    def compared(self) -> int:
        """How many entries were compared."""
        return math.prod(self.shape) - self.unchecked


class Kink(NamedTuple):
    """An entry whose finite-difference steps ``+-h`` crossed a kink.

    Attributes
    ----------
    layer : int or None
        As in :class:`Block`.
    name : {"W", "b", "X"}
        The array.
    index : tuple of int
        The entry in that array.
    analytic, numeric : float
        The two gradients there: the numerical one is the one-sided difference compared
        (``side`` -1 or +1), or, if the entry was not compared (``side`` 0), the central
        difference, which averages the slopes on both sides of the kink.
    side : int
        -1: compared with the backward difference (the step ``+h`` crossed); +1: with the
        forward one (``-h`` crossed); 0: both steps crossed, not compared.
    """

    layer: int | None
    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    side: int = 0

    def __str__(self) -> str:
        return _at(self.layer, self.name, self.index)


def _at(layer: int | None, name: str, index: tuple[int, ...] | None = None) -> str:
    """``"layer 1 b[3]"``, or ``"x[2]"`` without a layer; ``"layer 1 b"`` without an index."""
    at = name if index is None else f"{name}[{', '.join(map(str, index))}]"
    return at if layer is None else f"layer {layer} {at}"


def _listed(kinks, shown: int) -> str:
    """``"N entries (first shown, ..., and M more)"``."""
    n = len(kinks)
    more = f", and {n - shown} more" if n > shown else ""
    return f"{n} entr{'y' if n == 1 else 'ies'} ({', '.join(map(str, kinks[:shown]))}{more})"


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """The result of a gradient check, located.

    ``float(report)`` is :attr:`max_error`, and a report compares with a
    number as its ``max_error`` does (``report < 1e-6``), so code written
    for the bare float the check used to return keeps working. ``str(report)``
    is a table, one row per array.

    Three verdicts (:attr:`verdict`): ``"ok"``; ``"FAILED"``, a compared entry's error
    (or NaN) at or above the tolerance; ``"not checked"``, nothing failed but an array had
    no entry compared (every entry's steps crossed a kink on both sides), so a wrong
    gradient there could not show. :attr:`ok` is True for ``"ok"`` only, and
    :attr:`max_error` is below the tolerance exactly then: ``inf`` for ``"not checked"``.

    Attributes
    ----------
    blocks : tuple of Block
        One per checked array, in ``params`` order (``W_0, b_0, W_1, ...``).
    tolerance, floor : float
        The pass bound of :attr:`max_error` and the floor of the relative error (of the
        entries compared with central differences).
    dtype : str
        dtype of the analytic gradient ("float32" or "float64").
    backend : str
        What computed the analytic gradient: a backend name, ``"reference"``
        (``gradcheck(..., reference=True)``), ``"input gradient"``
        (:func:`input_gradcheck`) or ``"function"`` (:func:`check_gradients`).
    h : float
        Largest finite-difference step.
    kinks : tuple of Kink
        The entries whose steps ``+-h`` moved a pre-activation across a kink of the
        activation (:func:`kink_crossings`), in ``blocks`` order. Where one step did, the
        entry is compared with the one-sided difference from the other side, which stays
        on the piece of the point (the slope the backward rule takes, :func:`pieces`);
        where both did (:attr:`unchecked`), it is not compared.
    noise : float
        Bound on the central differences' rounding error, ``c u |L| / h``
        (:func:`rounding_noise`); :attr:`floor` is at least ``noise / tolerance``, so
        that below the floor an entry passes if ``|a - n| < noise``. 0 if not computed.
    one_sided_floor : float
        The floor of the entries compared with one-sided differences: at least their
        rounding noise, ``22/3 noise``, over the tolerance. 0 if not computed.
    """

    blocks: tuple[Block, ...]
    tolerance: float
    floor: float
    dtype: str
    backend: str
    h: float
    kinks: tuple[Kink, ...] = ()
    noise: float = 0.0
    one_sided_floor: float = 0.0

    #: How many listed entries ``str(report)`` names (all are in :attr:`kinks`).
    SHOWN_KINKS = 8

    def _rank(self, b: Block) -> tuple[int, float]:
        """NaN first, then errors at or above the tolerance, then arrays with no entry
        compared, then errors below the tolerance; the larger error first within each."""
        if math.isnan(b.max_error):
            return 3, 0.0
        if b.compared == 0:
            return 1, 0.0
        return (2 if b.max_error >= self.tolerance else 0), b.max_error

    @property
    def worst(self) -> Block:
        """The block that decides :attr:`verdict`: one with a NaN or the largest failing
        error, else one with no entry compared, else the one with the largest error."""
        return max(self.blocks, key=self._rank)

    @property
    def max_error(self) -> float:
        """Largest relative error over every compared entry (NaN if any is NaN), or
        ``inf`` if none failed but an array had no entry compared."""
        return self.worst.max_error

    @property
    def where(self) -> tuple[int | None, str, tuple[int, ...]]:
        """``(layer, "W" or "b", index)`` of the worst entry; a function's is ``(None, "x", i)``;
        the index is ``()`` for an array with no entry compared."""
        b = self.worst
        return b.layer, b.name, b.index

    @property
    def per_layer(self) -> dict[tuple[int | None, str], float]:
        """``{(layer, "W" or "b"): largest error in that array}`` (``inf``: none compared)."""
        return {(b.layer, b.name): b.max_error for b in self.blocks}

    @property
    def unchecked(self) -> tuple[Kink, ...]:
        """The entries not compared: both their steps crossed a kink."""
        return tuple(k for k in self.kinks if k.side == 0)

    @property
    def verdict(self) -> str:
        """``"ok"``, ``"FAILED"`` or ``"not checked"`` (see the class)."""
        rank = self._rank(self.worst)[0]
        return {0: "ok", 1: "not checked"}.get(rank, "FAILED")

    @property
    def ok(self) -> bool:
        """Whether :attr:`max_error` is below :attr:`tolerance` (never for NaN, nor when an
        array had no entry compared): :attr:`verdict` is ``"ok"``."""
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
        """A table, one row per array (``kinks`` and ``unchecked`` columns when an entry
        crossed one), the crossed entries, and the verdict last."""
        unchecked = self.unchecked
        # The counts of Block.kinks and Block.unchecked, where some entry has one.
        counts = [c for c, listed in (("kinks", self.kinks), ("unchecked", unchecked)) if listed]
        rows = [("layer", "array", "shape", "max error", "index", "analytic", "numeric", *counts)]
        for b in self.blocks:
            compared = (f"{b.max_error:.1e}", ", ".join(map(str, b.index)),
                        f"{b.analytic:+.8e}", f"{b.numeric:+.8e}")
            rows.append((
                "-" if b.layer is None else str(b.layer), b.name,
                "x".join(map(str, b.shape)) or "()",
                *(compared if b.compared else ("-",) * 4),  # every entry crossed on both sides
                *(str(getattr(b, c)) for c in counts),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        # The floor, and the noise when it is what set the floor (c u |L| / h / tolerance).
        raised = self.noise > 0 and self.floor <= self.noise / self.tolerance * (1 + 1e-9)
        noise = f" (noise {self.noise:.2g} / tolerance)" if raised else ""
        one_sided = [k for k in self.kinks if k.side]
        if one_sided and self.one_sided_floor != self.floor:
            noise += f", one-sided floor={self.one_sided_floor:.3g}"
        lines = [
            f"gradient check: {self.backend} ({self.dtype}) vs float64 central differences, "
            f"h={self.h:g}, floor={self.floor:.3g}{noise}"
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        if one_sided:
            lines.append("crossed a kink on one side, compared one-sided from the other: "
                         f"{_listed(one_sided, self.SHOWN_KINKS)}")
        if unchecked:
            lines.append("crossed a kink on both sides, not compared: "
                         f"{_listed(unchecked, self.SHOWN_KINKS)}")
        compared = [b for b in self.blocks if b.compared]
        if compared:
            b = max(compared, key=self._rank)
            worst = f"max error {b.max_error:.1e} at {_at(b.layer, b.name, b.index)}"
        else:
            worst = "no entry compared"
        verdict = self.verdict
        if verdict == "not checked":
            arrays = ", ".join(_at(b.layer, b.name) for b in self.blocks if not b.compared)
            verdict = f"not checked: every entry of {arrays} crossed a kink on both sides"
        lines.append(f"{worst}, tolerance {self.tolerance:g}: {verdict}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"GradcheckReport(max_error={self.max_error:.3g}, where={self.where}, "
            f"ok={self.ok}, tolerance={self.tolerance:g}, dtype={self.dtype!r}, "
            f"backend={self.backend!r}, kinks={len(self.kinks)}, "
            f"unchecked={len(self.unchecked)})"
        )


# --------------------------------------------------------------------------- numerics


def numerical_gradient(f: Callable[[np.ndarray], float], x, h: float = 1e-4,
                       side=None) -> np.ndarray:
    """Finite differences with Richardson extrapolation, of every entry: central, or one-sided.

    Central (``side`` 0, every entry by default): one step, ``(4 D(h/2) - D(h)) / 3`` with
    ``D(s) = (f(x + s e_k) - f(x - s e_k)) / (2 s)``, an error of ``O(h^4)``.
    One-sided (``side`` -1 or +1), from one side of ``x`` only (where a kink lies on the
    other, :func:`kink_crossings`): ``D_1(s) = (f(x + side s e_k) - f(x)) / (side s)`` has
    an error ``s f''/2 + s^2 f'''/6 + ...``; one step, ``R(s) = 2 D_1(s/2) - D_1(s)``, leaves
    ``-s^2 f'''/12``, and a second, ``(4 R(h/2) - R(h)) / 3``, an error of ``O(h^3)``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``, a scalar function of an array shaped like ``x``,
        evaluated in float64. It is called with one array that is nudged in
        place between calls (``4`` calls per central entry, ``3`` per one-sided
        one, and once at ``x`` if any is one-sided), so it must not keep it.
    x : array_like of any shape
        The point; copied to float64.
    h : float
        Largest step (``h/2`` is the other; one-sided, also ``h/4``).
    side : array_like of int, optional
        Of the shape of ``x``: 0 central, -1 backward (``f`` at ``x - s e_k`` and ``x``),
        +1 forward (``x`` and ``x + s e_k``). Default: 0 everywhere.

    Returns
    -------
    array of the shape of ``x``, float64
    """
    # A C-ordered copy, nudged one entry at a time through a flat view (a
    # Fortran-ordered one would make reshape copy, and the nudges would be lost).
    x = np.array(x, dtype=np.float64, order="C")
    flat = x.reshape(-1)
    sides = (np.zeros(flat.shape[0], dtype=np.int8) if side is None
             else np.broadcast_to(np.asarray(side), x.shape).reshape(-1))
    if not np.isin(sides, (-1, 0, 1)).all():
        raise ValueError("side must be -1 (backward), 0 (central) or +1 (forward)")
    f_x = float(f(x)) if sides.any() else math.nan

    def f_at(k: int, step: float) -> float:
        """``f(x + step e_k)``."""
        original = flat[k]
        flat[k] = original + step
        value = float(f(x))
        flat[k] = original
        return value

    def central_difference(k: int, step: float) -> float:
        return (f_at(k, step) - f_at(k, -step)) / (2 * step)

    def one_sided_difference(k: int, step: float) -> float:
        return (f_at(k, step) - f_x) / step  # step < 0: the backward difference

    out = np.empty(flat.shape[0])
    for k in range(flat.shape[0]):
        if sides[k] == 0:
            out[k] = (4 * central_difference(k, h / 2) - central_difference(k, h)) / 3
        else:
            s = int(sides[k]) * h
            D = [one_sided_difference(k, s / q) for q in (1, 2, 4)]  # D_1(h), D_1(h/2), D_1(h/4)
            R_h, R_h2 = 2 * D[1] - D[0], 2 * D[2] - D[1]  # R(h), R(h/2): O(h^2)
            out[k] = (4 * R_h2 - R_h) / 3
    return out.reshape(x.shape)


def pieces(Z, kinks: tuple[float, ...]) -> np.ndarray:
    """Which piece of the activation each pre-activation is on: the number of ``kinks`` below it.

    ReLU and leaky ReLU (one kink, at 0) have two pieces, ``Z <= 0`` (piece 0) and ``Z > 0``
    (piece 1): the split of their backward rules, whose ``H > 0`` holds exactly for ``Z > 0``
    (``H`` has the sign of ``Z``), so at ``Z = 0`` they take the slope of piece 0 (0, or
    leaky ReLU's ``LEAKY_SLOPE``).
    """
    piece = np.zeros(np.shape(Z), dtype=np.int8)
    for c in kinks:
        piece += Z > c
    return piece


def kink_crossings(pieces_at: Callable[[np.ndarray], list], x,
                   h: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Which entries ``x_k`` of ``x``, nudged to ``x_k - h`` or to ``x_k + h``, move a
    pre-activation off the piece it is on at ``x``.

    The finite differences of :func:`numerical_gradient` evaluate the function on
    ``[x - h e_k, x]`` and ``[x, x + h e_k]``. Where a pre-activation leaves its piece on
    one of these segments, the segment crosses a kink, and a difference that uses it mixes
    the slopes of two pieces. For a network of piecewise-linear activations the ends tell
    all: on a segment where no earlier layer changes piece, each pre-activation is linear
    in ``x_k``, and a piece is an interval, so it stays on its piece along the segment if
    and only if it is on it at the far end.

    Parameters
    ----------
    pieces_at : callable
        ``pieces_at(x) -> list of integer arrays``: the piece of every
        pre-activation (:func:`pieces` of each hidden layer's ``Z``). It is called
        with one array that is nudged in place between calls (``1 + 2 x.size`` calls).
    x : array_like of any shape
        The point; copied to float64.
    h : float
        The largest step of the finite differences.

    Returns
    -------
    down, up : bool arrays of the shape of ``x``
        True where the step ``-h`` (``down``) or ``+h`` (``up``) crosses a kink. Where
        neither does, the central difference is good; where one does, the one-sided
        difference from the other side; where both do, no difference at this ``h``.
    """
    x = np.array(x, dtype=np.float64, order="C")  # nudged through a flat view, as above
    flat = x.reshape(-1)
    here = pieces_at(x)

    def leaves(k: int, step: float) -> bool:
        original = flat[k]
        flat[k] = original + step
        there = pieces_at(x)
        flat[k] = original
        return any(not np.array_equal(a, b) for a, b in zip(there, here, strict=True))

    down = np.array([leaves(k, -h) for k in range(flat.shape[0])], dtype=bool)
    up = np.array([leaves(k, h) for k in range(flat.shape[0])], dtype=bool)
    return down.reshape(x.shape), up.reshape(x.shape)


def _sides(activation: str, layer_Z: Callable[[np.ndarray], list], x,
           h: float) -> tuple[np.ndarray, np.ndarray]:
    """The difference each entry of ``x`` takes, for a network whose hidden layers' ``Z``
    are ``layer_Z(x)``: ``side`` (0 central, -1 backward, +1 forward; the argument of
    :func:`numerical_gradient`) and ``unchecked`` (both steps cross a kink: ``side`` 0,
    and nothing to compare). From :func:`kink_crossings`; all central if the activation
    has no kink."""
    kinks = ACTIVATIONS[activation].kinks
    shape = np.shape(x)
    if not kinks:
        return np.zeros(shape, dtype=np.int8), np.zeros(shape, dtype=bool)
    down, up = kink_crossings(lambda x_: [pieces(Z, kinks) for Z in layer_Z(x_)], x, h)
    side = (down & ~up).astype(np.int8) - (up & ~down).astype(np.int8)
    return side, down & up


def rounding_noise(scale: float, h: float, one_sided: bool = False) -> float:
    """Bound on the rounding error of :func:`numerical_gradient`: ``c u |L| / h``.

    Each evaluation ``L(theta +- s e_k)`` is off by ``delta``, ``|delta| <= kappa u |L|``
    (``u`` = :data:`UNIT_ROUNDOFF`). Central: ``D(s)`` divides the difference of two by
    ``2 s``, so ``D(h/2)`` is off by at most ``2 kappa u |L| / h`` and ``D(h)`` by
    ``kappa u |L| / h``, and ``n_k = (4 D(h/2) - D(h)) / 3`` by
    ``(8 + 1) / 3 kappa u |L| / h = 3 kappa u |L| / h``. One-sided,
    ``(4 R(h/2) - R(h)) / 3 = (8 D_1(h/4) - 6 D_1(h/2) + D_1(h)) / 3`` is, with ``L_q``
    for ``L(theta +- h/q e_k)``, ``+-(32 L_4 - 12 L_2 + L_1 - 21 L(theta)) / (3 h)``: off by
    ``(32 + 12 + 1 + 21) / 3 kappa u |L| / h = 22 kappa u |L| / h``. The truncation errors,
    ``O(h^4 L^(5))`` and ``O(h^3 L^(4))``, are far below these at ``h = 1e-4``
    (docs/math.md, section 10).

    Parameters
    ----------
    scale : float
        ``|L|``, the size of the function differentiated, at the point (for a sum with
        terms of both signs, the sum of their sizes: rounding follows them, not the sum).
    h : float
        Largest step.
    one_sided : bool
        The bound of the one-sided difference rather than of the central one.

    Returns
    -------
    float
        ``c u |scale| / h``, ``c = 3 kappa`` = :data:`NOISE_FACTOR`, or
        ``c = 22 kappa`` = :data:`ONE_SIDED_NOISE_FACTOR`.
    """
    c = ONE_SIDED_NOISE_FACTOR if one_sided else NOISE_FACTOR
    return c * UNIT_ROUNDOFF * abs(float(scale)) / h


def relative_errors(analytic, numeric, floor) -> np.ndarray:
    """``|a - n| / max(|a| + |n|, floor)``, entry by entry (float64; ``floor`` a number or an
    array of their shape).

    The floor turns the test into an absolute one for gradients below it:
    the numerical gradient carries rounding noise (:func:`rounding_noise`, a few
    ``1e-12``; a float32 analytic one far more), which relative to a gradient of
    ``1e-7`` (or of exactly 0, a dead ReLU unit) would be large for no fault of
    the backward pass. The checks raise the floor to at least ``noise / tolerance``.
    """
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)


def _block(layer, name, analytic, numeric, floors: tuple[float, float], side=None,
           unchecked=None) -> tuple[Block, list[Kink]]:
    """The :class:`Block` of one array, and its entries that crossed a kink: ``side``
    (:func:`numerical_gradient`'s, or None: all central) nonzero, or ``unchecked`` (a
    boolean array of its shape, or None). ``floors``: the floor of the central and of the
    one-sided differences. An unchecked entry is not compared, unless its error is NaN:
    a NaN gradient is a fault wherever it is."""
    shape = np.shape(analytic)
    side = np.zeros(shape, dtype=np.int8) if side is None else np.asarray(side)
    err = relative_errors(analytic, numeric, np.where(side != 0, floors[1], floors[0]))
    err, a, n, side = (np.reshape(v, -1) for v in (err, analytic, numeric, side))
    skip = np.zeros(err.size, dtype=bool) if unchecked is None else np.reshape(unchecked, -1)
    skip = skip & ~np.isnan(err)
    kinks = [Kink(layer, name, tuple(int(i) for i in np.unravel_index(k, shape)), float(a[k]),
                  float(n[k]), int(side[k]))
             for k in np.flatnonzero((side != 0) | skip)]
    if skip.all():
        return Block(layer, name, shape, math.inf, (), math.nan, math.nan, len(kinks),
                     int(skip.sum())), kinks
    # argmax with NaN ranked first, so a NaN gradient is the one reported; skipped entries last.
    ranked = np.where(np.isnan(err), np.inf, err)
    flat = int(np.argmax(np.where(skip, -np.inf, ranked)))
    index = tuple(int(i) for i in np.unravel_index(flat, shape))
    return (Block(layer, name, shape, float(err[flat]), index, float(a[flat]), float(n[flat]),
                  len(kinks), int(skip.sum())), kinks)


def _tolerance(dtype, tolerance: float | None, floor: float | None, scale: float,
               h: float) -> tuple[str, float, float, float, float]:
    """The dtype's name, its tolerance, the floors of the central and of the one-sided
    differences, and the central differences' rounding noise ``c u |scale| / h``. The
    tolerance and the dtype's floor are the defaults overridden by whatever the caller gave;
    each floor is raised to its rounding noise over the tolerance: the numerical gradient's
    rounding noise alone never uses up the tolerance."""
    name = np.dtype(dtype).name
    default = TOLERANCES.get(name, TOLERANCES["float32"])  # anything narrower: float32's
    tolerance = default.tolerance if tolerance is None else float(tolerance)
    floor = default.floor if floor is None else float(floor)
    noise = rounding_noise(scale, h)
    return (name, tolerance, max(floor, noise / tolerance),
            max(floor, rounding_noise(scale, h, one_sided=True) / tolerance), noise)


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
        locates it. With a kinked activation (ReLU, leaky ReLU), an entry whose step
        ``-h`` or ``+h`` moves a hidden pre-activation across a kink (a fresh network's
        zero biases put whole rows at ``Z = 0``) is compared with the one-sided
        difference from the other side (with the floor ``report.one_sided_floor``), or
        not at all if both steps cross one; all are listed in ``report.kinks``
        (:func:`kink_crossings`). An array with no entry compared fails the check:
        ``report.verdict`` is ``"not checked"``, ``max_error`` ``inf``.

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
    side, unchecked = _sides(model.activation,
                             lambda t: _reference.forward(model.unflatten(t), X64, r)[1], theta, h)
    numeric = numerical_gradient(loss_at, theta, h, side)
    # Every term of L is >= 0: |L| is their size.
    dtype, tolerance, *floors, noise = _tolerance(dtype, tolerance, floor, loss_at(theta), h)
    blocks, kinks = [], []
    for l, arrays in enumerate(zip(grads, *map(model.unflatten, (numeric, side, unchecked)),
                                   strict=True)):
        for j, name in enumerate(("W", "b")):
            a, n, s, u = (v[j] for v in arrays)
            block, crossings = _block(l, name, a, n, floors, s, u)
            blocks.append(block)
            kinks += crossings
    return GradcheckReport(tuple(blocks), tolerance, floors[0], dtype, backend, h, tuple(kinks),
                           noise, floors[1])


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
        The points (float64). An input whose step ``-h`` or ``+h`` moves a hidden
        pre-activation across a kink (ReLU's ``Z = 0``) is compared one-sided from the
        other side, or not at all if both steps cross one, as in :func:`gradcheck`; all
        are listed in ``report.kinks``.
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
    side, unchecked = _sides(model.activation, lambda X_: _reference.forward(params, X_, r)[1],
                             X64, h)
    numeric = numerical_gradient(lambda X_: float(outputs(X_).sum()), X64, h, side)
    # Logits of both signs: the sum rounds with the size of its terms, sum_i |z_i|.
    dtype, tolerance, *floors, noise = _tolerance(np.float64, tolerance, floor,
                                                  np.abs(outputs(X64)).sum(), h)
    block, kinks = _block(None, "X", analytic, numeric, floors, side, unchecked)
    return GradcheckReport((block,), tolerance, floors[0], dtype, "input gradient", h,
                           tuple(kinks), noise, floors[1])


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
    dtype = analytic.dtype if np.issubdtype(analytic.dtype, np.floating) else np.float64
    # |f(x)|: f's terms are unknown here.
    dtype, tolerance, *floors, noise = _tolerance(dtype, tolerance, floor, f(x.copy()), h)
    block, _ = _block(None, "x", analytic, numeric, floors)
    return GradcheckReport((block,), tolerance, floors[0], dtype, "function", h, noise=noise)
