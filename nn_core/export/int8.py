"""Integer-only int8 inference (format ``c-int8-full``): calibration, tables, NumPy model.

The network runs on integers only, from the quantisation of the first layer's inputs to the
fixed-point probability (TensorFlow Lite's "full integer" scheme, with a fixed-point sigmoid):

- **Weights**: symmetric int8 per output channel, ``Q_ij = round(W_ij / s_j)``,
  ``s_j = max_i |W_ij| / 127`` (:func:`nn_core.export.model.quantise_int8`).
- **Layer-0 inputs**: one scale ``S_0 = 1 / k`` with ``k`` a whole number (``k =
  floor(127 / r)``, ``r`` the largest ``|z|`` of a real-valued layer-0 feature over the
  calibration rows: a standardised value, a Gaussian rank or a piecewise-linear
  component; at most 127): ``z_q = clamp(round(z k), -127, 127)``, zero point 0, so a
  one-hot feature (exactly 1) is exactly the integer ``k``.
- **Hidden activations**: asymmetric int8, ``a = S (a_q - Z)``, with ``S`` and ``Z`` from
  the range the float network reaches on the calibration rows (0 always included).
- **Accumulation** in int32: ``acc_j = B_j + sum_i a_q,i Q_ij`` with the zero point folded
  into the bias, ``B_j = round(b_j / (S_in s_j)) - Z_in sum_i Q_ij``; then ``acc_j`` stands
  for the pre-activation ``S_in s_j acc_j``.
- **Requantisation**: ``a_q,j = clamp(Z_out + round(M_j acc_j))`` with the real multiplier
  ``M_j = S_in s_j / S_out`` written as ``M_j = m_j 2^-r_j``, ``m_j`` an int32 in
  ``[2^30, 2^31)`` and ``1 <= r_j <= 62`` (:func:`fixed_point_multiplier`): one
  32 x 32 -> 64-bit multiply and one rounding shift (:func:`requantise`).
- **Activation**: ReLU is the clamp at ``Z_out`` (the output range starts at 0, so
  ``Z_out = -128``); every other activation of ``nn_core/activations.py: ACTIVATIONS`` is a
  256-entry int8 table of the pre-activation code, built from the table's own ``forward``.
- **Output**: the logit in fixed point, ``L = round(M acc)`` with ``2^-LOGIT_BITS`` per
  unit; the sigmoid is a table of ``SIGMOID_STEPS`` + 1 values of ``2^15 sigmoid(x)`` on
  ``[0, SIGMOID_RANGE]`` interpolated linearly, and ``1 - sigmoid(-x)`` for negative ``x``:
  the probability is ``P / 2^15``, one conversion at the very end. An identity output
  returns ``L`` times its scale.
- **Combined models** (``nn_core/ensemble.py``): each member is quantised on its own from
  the same layer-0 codes; its last layer requantises to ``w_k z_k`` in the logit's units
  (multiplier ``|w_k| S_in s 2^LOGIT_BITS``, a negative ``w_k`` negating its int8 weights
  and bias) and ``L = round(c 2^LOGIT_BITS) + sum_k L_k`` is summed in 64 bits and
  saturated. Platt's ``sigma(a z + b)`` is folded in (``a w_k``, ``a c + b``); an isotonic
  ``q`` is composed into a table of ``2^15 q(sigmoid(t / 8))`` over both signs of ``t``.

Rounding is half up (toward +infinity) in every integer step; the float-to-int8 rounding
of the inputs is half away from zero. The C runtime is ``templates/int8.c``; this module
holds the export-time maths and :func:`predict_int8_full`, which the tests hold the C to
(bit for bit, but for a rare float rounding tie in the inputs' quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..activations import ACTIVATIONS
from .model import ExportError, ExportModel, features_from_codes, gaussian_rank32, quantise_int8

#: Fractional bits of the fixed-point logit (1/4096 per unit).
LOGIT_BITS = 12
#: The sigmoid table covers logits 0..SIGMOID_RANGE; beyond it the probability is 0 or 1
#: to within 2^-15 (sigmoid(16) = 1 - 1.1e-7).
SIGMOID_RANGE = 16
#: The table's step is 2^-SIGMOID_STEP_BITS (1/8) of logit.
SIGMOID_STEP_BITS = 3
SIGMOID_STEPS = SIGMOID_RANGE << SIGMOID_STEP_BITS
#: Fixed-point bits of the probability.
PROB_BITS = 15
#: Largest |bias| code a weight scale may ask for (a quarter of the int32 range: room for
#: the zero-point term and the products).
BIAS_LIMIT = 2**29
#: requantise saturates to +-SATURATE, far outside every clamp that follows, so that adding
#: a zero point cannot overflow.
SATURATE = 2**30 - 1


@dataclass
class Layer:
    """One integer layer: ``Qt`` (fan_out, fan_in) int8 (transposed: each output's weights
    are contiguous), ``bias`` int32 (the input's zero point folded in), ``mult``/``shift``
    per output (``M = mult 2^-shift``), the zero point of the codes the accumulator is
    requantised to, and for a hidden activation other than ReLU the table that maps those
    codes to the output's."""

    Qt: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    zero_out: int = 0
    table: np.ndarray | None = None


@dataclass
class IntegerNetwork:
    """The tables of a ``c-int8-full`` predictor.

    Attributes
    ----------
    k : int
        Layer-0 input scale is ``1 / k``; a one-hot feature is the integer ``k``.
    input_a, input_b : ndarray (n_numeric,) float32
        ``z_q = round(u * input_a + input_b)`` with ``u`` the (log1p'd) raw value:
        ``input_a = k / std``, ``input_b = -k mean / std``.
    layers : list of Layer
    output_scale : float
        Real value of one unit of the output layer's result (``2^-LOGIT_BITS`` for a
        sigmoid output).
    sigmoid : ndarray (SIGMOID_STEPS + 1,) int64, ``round(2^15 sigmoid(t / 8))``
    others : list of list of Layer
        A combined model: members 1..K-1 (``layers`` is member 0), each last layer giving
        ``w_k z_k`` in units of ``2^-LOGIT_BITS`` (Platt's ``a`` folded into ``w_k``).
    logit_bias : int
        A combined model: ``round(c 2^LOGIT_BITS)`` (Platt: ``c = a c + b``); the fixed-point
        logit is ``L = logit_bias + sum_k L_k``.
    calibrated : ndarray (2 SIGMOID_STEPS + 1,) int64 or None
        An isotonic calibration ``q``: ``round(2^15 q(sigmoid(t / 8)))``,
        t = -SIGMOID_STEPS..SIGMOID_STEPS, used instead of ``sigmoid``.
    """

    k: int
    input_a: np.ndarray
    input_b: np.ndarray
    layers: list[Layer]
    output_scale: float
    sigmoid: np.ndarray
    others: list[list[Layer]] = field(default_factory=list)
    logit_bias: int = 0
    calibrated: np.ndarray | None = None

    @property
    def members(self) -> list[list[Layer]]:
        """Every member's layers, member 0 (``layers``) first."""
        return [self.layers, *self.others]


def fixed_point_multiplier(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``M = m 2^-r`` with ``m`` in ``[2^30, 2^31)`` (an int32) and ``1 <= r <= 62``.

    ``M = f 2^e`` with ``f`` in [0.5, 1) (``frexp``); ``m = round(f 2^31)``, ``r = 31 - e``
    (if rounding reaches ``2^31``, ``m`` is halved and ``r`` lowered by one). The relative
    error of ``m 2^-r`` is at most ``2^-31``.

    Raises
    ------
    ExportError
        A multiplier outside ``[2^-31, 2^30)``: an activation range that is far too narrow
        or too wide to quantise.
    """
    M = np.asarray(M, dtype=np.float64)
    f, e = np.frexp(np.where(np.isfinite(M) & (M > 0), M, 0.5))
    m = np.floor(f * 2.0**31 + 0.5).astype(np.int64)
    top = m == 2**31
    m[top] //= 2
    r = 31 - (e + top)
    if not (np.all(np.isfinite(M) & (M > 0)) and np.all((r >= 1) & (r <= 62))):
        raise ExportError("c-int8-full: a requantisation multiplier is outside [2^-31, 2^30); "
                          "the calibration rows give an activation range that cannot be "
                          "quantised")
    return m, r.astype(np.int64)


def requantise(acc: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``round(acc m 2^-r)``, half up, saturated to +-SATURATE, as the C runtime computes it:
    the 64-bit product plus ``2^(r-1)``, shifted right by ``r`` (int64 throughout)."""
    v = (acc.astype(np.int64) * m + np.left_shift(np.ones_like(r), r - 1)) >> r
    return np.clip(v, -SATURATE, SATURATE)


def _asymmetric(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of int8 codes -128..127 covering [lo, hi] (0 included)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        hi = 1.0  # a constant-zero activation: any scale represents it
    S = (hi - lo) / 255.0
    return S, int(np.clip(np.floor(-128 - lo / S + 0.5), -128, 127))


def _round_half_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + v.dtype.type(0.5))


def calibrate(model: ExportModel, X: np.ndarray) -> IntegerNetwork:
    """Quantise the network, fixing activation ranges on calibration rows.

    Parameters
    ----------
    model : ExportModel
    X : ndarray, shape (n, n_inputs)
        Raw input rows (categorical inputs as codes), e.g. the training rows. Rows with an
        invalid numeric value are left out.

    Returns
    -------
    IntegerNetwork

    Raises
    ------
    ExportError
        No valid row, or a range that cannot be quantised.
    """
    F = features_from_codes(model, X)
    F = F[~np.isnan(F).any(axis=1)]
    if len(F) == 0:
        raise ExportError("c-int8-full: no valid calibration row")
    rows = ([c.row for c in model.valued] + [c.rank_row for c in model.ranked]
            + [c.ple_row + t for c in model.encoded for t in range(c.n_bins)])
    r = float(np.abs(F[:, rows]).max()) if rows else 0.0
    k = int(np.clip(np.floor(127.0 / r), 1, 127)) if r > 0 else 127
    std = np.array([c.std for c in model.valued], dtype=np.float64)
    mean = np.array([c.mean for c in model.valued], dtype=np.float64)
    input_a = (k / std).astype(np.float32)
    input_b = (-k * mean / std).astype(np.float32)
    if model.combined and model.output != "sigmoid":
        raise ExportError("c-int8-full: a combined model needs the sigmoid output")
    weights, bias = _folded_combination(model)
    members = [_quantise_member(m.params, m.activation, model.output, F, k,
                                w if model.combined else None)
               for m, w in zip(model.members, weights, strict=True)]
    grid = np.arange(SIGMOID_STEPS + 1) / 2.0**SIGMOID_STEP_BITS
    sigmoid = np.floor(2.0**PROB_BITS / (1 + np.exp(-grid)) + 0.5).astype(np.int64)
    output_scale = members[0][1]
    net = IntegerNetwork(k, input_a, input_b, members[0][0], output_scale, sigmoid,
                         others=[layers for layers, _ in members[1:]])
    if model.combined:
        net.logit_bias = int(np.floor(bias * 2.0**LOGIT_BITS + 0.5))
        if abs(net.logit_bias) >= 2**30:
            raise ExportError("c-int8-full: the combined logit's bias does not fit the "
                              "fixed-point logit")
        if (model.calibration or {}).get("kind") == "isotonic":
            net.calibrated = _isotonic_table(model.calibration)
    return net


def _folded_combination(model: ExportModel) -> tuple[list[float], float]:
    """The members' weights and the bias of the logit the output stage takes: ``w_k`` and
    ``c`` of ``z = c + sum_k w_k z_k``, with a Platt calibration ``sigma(a z + b)`` folded
    in exactly (``a w_k`` and ``a c + b``: then the output is the plain sigmoid)."""
    weights = [m.weight for m in model.members]
    bias = model.logit_bias
    cal = model.calibration or {}
    if cal.get("kind") == "platt":
        weights = [cal["a"] * w for w in weights]
        bias = cal["a"] * bias + cal["b"]
    for j, w in enumerate(weights):
        if w == 0:
            raise ExportError(f"c-int8-full: member {j} has weight 0 in the combined logit "
                              "(it cannot be requantised; leave it out of the model)")
    return weights, bias


def _isotonic_table(calibration: dict) -> np.ndarray:
    """``round(2^15 q(sigma(t / 8)))``, t = -SIGMOID_STEPS..SIGMOID_STEPS, for the isotonic
    calibration ``q`` (``nn_core/calibration.py: Isotonic``): the sigmoid and the
    interpolation between the breakpoints composed into one table of the logit."""
    grid = np.arange(-SIGMOID_STEPS, SIGMOID_STEPS + 1) / 2.0**SIGMOID_STEP_BITS
    q = np.interp(1 / (1 + np.exp(-grid)), calibration["x"], calibration["y"])
    return np.floor(q * 2.0**PROB_BITS + 0.5).astype(np.int64)


def _quantise_member(params: list, activation: str, output: str, F: np.ndarray, k: int,
                     weight: float | None) -> tuple[list[Layer], float]:
    """One network's integer layers, from layer 0's codes (scale ``1 / k``) to its output.

    ``H`` follows the float network on the calibration rows ``F`` (float64) to fix the
    activation ranges. ``weight``: ``None`` for a single network (its output as the
    fixed-point logit or the identity's 16 bits); for a member of a combined model its
    ``w_k``, and the last layer is requantised straight to ``w_k z_k`` in units of
    ``2^-LOGIT_BITS`` (multiplier ``S_in s |w_k| 2^LOGIT_BITS``; a negative ``w_k`` negates
    the int8 weights and the bias, which is exact). Returns the layers and the real value
    of one unit of the output.
    """
    S_in, Z_in = 1.0 / k, 0
    H = F  # the float network's activations on the calibration rows (float64)
    layers = []
    act = ACTIVATIONS[activation]
    for layer, (W, b) in enumerate(params):
        last = layer == len(params) - 1
        Q, s = quantise_int8(W)
        # A unit whose weights the L2 penalty has shrunk to nothing (a dead ReLU unit: 1e-20
        # beside a bias of 1e-2) would need a bias beyond the int32 accumulator at the weight
        # scale max|W| / 127: its scale is raised until the bias fits (its weights then round
        # to 0, an error of at most |b| / 2^30 each).
        floor = np.abs(b.astype(np.float64)) / (S_in * BIAS_LIMIT)
        small = s.astype(np.float64) < floor
        if small.any():
            s = np.where(small, floor, s).astype(np.float32)
            Q[:, small] = _round_half_away(W[:, small].astype(np.float32) / s[small]).astype(
                np.int8)
        Z = H @ W.astype(np.float64) + b.astype(np.float64)
        acc_scale = S_in * s.astype(np.float64)
        bias = np.floor(b.astype(np.float64) / acc_scale + 0.5) - Z_in * Q.astype(np.int64).sum(0)
        if np.any(np.abs(bias) >= 2**30):
            raise ExportError(f"c-int8-full: layer {layer}'s bias does not fit the int32 "
                              "accumulator at this scale")
        # (S_q, Z_q): the codes the accumulator is requantised to; (S_out, Z_out): those of
        # the layer's output (the same but where a table maps one to the other)
        table = None
        if last:
            S_q = (2.0**-LOGIT_BITS if output == "sigmoid"  # identity: 16 bits of range
                   else max(float(np.abs(Z).max()), 1e-30) / 2**15)
            Z_q = 0
            if weight is not None:  # w_k z_k = (S_in s |w_k|) (sign(w_k) acc)
                S_q /= abs(weight)
                if weight < 0:
                    Q, bias = -Q, -bias
        elif activation == "relu":
            H = np.maximum(Z, 0)
            S_q, Z_q = _asymmetric(0.0, float(H.max()))  # Z_q = -128: the clamp is the ReLU
        else:  # requantise to the pre-activation's codes, then a table of f
            S_q, Z_q = _asymmetric(float(Z.min()), float(Z.max()))
            f = act.forward((np.arange(-128, 128) - Z_q) * S_q)
            S_out, Z_out = _asymmetric(float(f.min()), float(f.max()))
            table = np.clip(np.floor(f / S_out + 0.5) + Z_out, -128, 127).astype(np.int8)
            H = act.forward(Z)
        if table is None:
            S_out, Z_out = S_q, Z_q
        m, r = fixed_point_multiplier(acc_scale / S_q)
        layers.append(Layer(Qt=np.ascontiguousarray(Q.T), bias=bias.astype(np.int64), mult=m,
                            shift=r, zero_out=Z_q, table=table))
        S_in, Z_in = S_out, Z_out
    return layers, S_in


def quantise_inputs(model: ExportModel, net: IntegerNetwork, X: np.ndarray) -> np.ndarray:
    """Layer 0's integer input vector (n, n_features), as the C code builds it.

    ``z_q = round(u a + b)`` in float32 (``u = log1pf(x)`` where the column has log1p,
    ``x`` the imputed value where it is missing and the model imputes), clamped to
    [-127, 127] before rounding; the chosen one-hot feature of each categorical input, and
    each missing indicator that is set, is ``k``; a Gaussian rank ``g`` (computed in float32
    as the C does, :func:`nn_core.export.model.gaussian_rank32`) and a piecewise-linear
    feature ``e`` are ``round(g k)`` and ``round(e k)``, ``e`` computed in float32 from the
    edges and reciprocal widths as in the C target. Rows with an invalid numeric value are
    returned as zeros (the C returns NaN before this step).
    """
    F = features_from_codes(model, X)
    invalid = np.isnan(F).any(axis=1)
    V = np.where(invalid[:, None], 0, F * net.k)  # one-hot features: exactly k
    X32 = np.asarray(X, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for c in model.numeric:
            x = X32[:, c.index]
            if c.impute is not None:  # a missing (NaN) input takes the imputed value
                x = np.where(np.isnan(x), np.float32(c.impute), x)
            if c.value:
                t = model.valued.index(c)
                u = np.log1p(x) if c.log1p else x
                v = u * net.input_a[t] + net.input_b[t]
                v = np.clip(v, np.float32(-127), np.float32(127))
                V[:, c.row] = np.where(invalid, 0, _round_half_away(np.nan_to_num(v)))
            if c.knots is not None:
                v = gaussian_rank32(np.where(invalid, np.float32(c.knots[0]), x), c.knots,
                                    c.scores, c.ends) * np.float32(net.k)
                v = np.clip(v, np.float32(-127), np.float32(127))
                V[:, c.rank_row] = np.where(invalid, 0, _round_half_away(v))
            if c.edges is not None:
                b = np.asarray(c.edges, dtype=np.float64)
                E = (x[:, None] - b[:-1].astype(np.float32)) * (1.0 / np.diff(b)).astype(
                    np.float32)
                E[:, 1:] = np.maximum(E[:, 1:], np.float32(0))  # the C's order: below, then
                E[:, :-1] = np.minimum(E[:, :-1], np.float32(1))  # above
                v = np.clip(E * np.float32(net.k), np.float32(-127), np.float32(127))
                V[:, c.ple_row:c.ple_row + c.n_bins] = np.where(
                    invalid[:, None], 0, _round_half_away(np.nan_to_num(v)))
    return V.astype(np.int64)


def integer_logits(model: ExportModel, net: IntegerNetwork, X: np.ndarray) -> np.ndarray:
    """The fixed-point logit per row, int64 (n,): the output layer's integer result, or for
    a combined model ``L = logit_bias + sum_k L_k`` summed in 64 bits and saturated to
    +-SATURATE (each ``L_k`` a member's last layer requantised to ``w_k z_k``)."""
    A = quantise_inputs(model, net, X)
    if not model.combined:
        return _member_logit(A, net.layers)
    L = np.full(len(A), net.logit_bias, dtype=np.int64)
    for layers in net.members:
        L += _member_logit(A, layers)
    return np.clip(L, -SATURATE, SATURATE)


def _member_logit(A: np.ndarray, layers: list[Layer]) -> np.ndarray:
    """One network's integer result (n,) from layer 0's codes ``A`` (n, n_features)."""
    for layer in layers[:-1]:
        q = requantise(A @ layer.Qt.T.astype(np.int64) + layer.bias, layer.mult, layer.shift)
        A = np.clip(q + layer.zero_out, -128, 127)
        if layer.table is not None:
            A = layer.table.astype(np.int64)[A + 128]
    last = layers[-1]
    return requantise(A @ last.Qt.T.astype(np.int64) + last.bias, last.mult, last.shift)[:, 0]


def sigmoid_q15(net: IntegerNetwork, L: np.ndarray) -> np.ndarray:
    """``2^15 sigmoid(L 2^-LOGIT_BITS)`` by the table, interpolated, as the C code does."""
    frac_bits = LOGIT_BITS - SIGMOID_STEP_BITS  # logit bits below one table step
    a = np.minimum(np.abs(L), SIGMOID_RANGE << LOGIT_BITS)
    i = a >> frac_bits
    f = a & ((1 << frac_bits) - 1)
    lo = net.sigmoid[np.minimum(i, SIGMOID_STEPS)]
    hi = net.sigmoid[np.minimum(i + 1, SIGMOID_STEPS)]
    p = lo + (((hi - lo) * f + (1 << (frac_bits - 1))) >> frac_bits)
    return np.where(L >= 0, p, (1 << PROB_BITS) - p)


def calibrated_q15(net: IntegerNetwork, L: np.ndarray) -> np.ndarray:
    """``2^15 q(sigmoid(L 2^-LOGIT_BITS))`` by the isotonic table ``net.calibrated`` over
    logits -SIGMOID_RANGE..SIGMOID_RANGE (clamped outside), interpolated as the C does."""
    frac_bits = LOGIT_BITS - SIGMOID_STEP_BITS
    top = SIGMOID_RANGE << LOGIT_BITS
    a = np.clip(L, -top, top) + top
    i = a >> frac_bits
    f = a & ((1 << frac_bits) - 1)
    lo = net.calibrated[i]
    hi = net.calibrated[np.minimum(i + 1, 2 * SIGMOID_STEPS)]
    return lo + (((hi - lo) * f + (1 << (frac_bits - 1))) >> frac_bits)


def predict_int8_full(model: ExportModel, net: IntegerNetwork, X: np.ndarray) -> np.ndarray:
    """NumPy model of the ``c-int8-full`` predictor.

    Parameters
    ----------
    model : ExportModel
    net : IntegerNetwork
        From :func:`calibrate`.
    X : ndarray, shape (n, n_inputs)
        Raw inputs (categorical inputs as codes).

    Returns
    -------
    ndarray, shape (n,), float64: probabilities (multiples of 2^-15; NaN for invalid rows),
    or the predicted value of an identity output.
    """
    invalid = np.isnan(features_from_codes(model, X)).any(axis=1)
    L = integer_logits(model, net, X)
    if net.calibrated is not None:
        p = calibrated_q15(net, L) / 2.0**PROB_BITS
    elif model.output == "sigmoid":
        p = sigmoid_q15(net, L) / 2.0**PROB_BITS
    else:
        p = (L.astype(np.float32) * np.float32(net.output_scale)).astype(np.float64)
    return np.where(invalid, np.nan, p)
