"""What an exporter knows about a model, and the reference maths of the exported predictors.

:func:`load_model_dir` reads a model directory through :mod:`nn_core.modeldir` and turns
``preprocess.json`` (held as data, :class:`nn_core.preprocessing.Preprocessing`) into one
:class:`Input` per raw input. The rest is the NumPy model of what the generated code
computes: :func:`features_from_codes` (the transform, through
:func:`nn_core.preprocessing.features_from_inputs`), :func:`fold_first_layer`,
:func:`quantise_int8` and :func:`predict_int8`; :func:`encode_table` turns a table into
the raw inputs a device would pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..activations import ACTIVATIONS, LEAKY_SLOPE
from ..calibration import calibration_from_dict
from ..ensemble import Ensemble, side_by_side
from ..losses import OUTPUTS
from ..modeldir import PREPROCESS_JSON, load_model
from ..network import MLP
from ..preprocessing import (
    ENCODING_KINDS,
    block_width,
    canonical_series,
    features_from_inputs,
    missing_mask,
    part_slices,
)

#: Every hidden activation of the table can be exported: each entry spells itself in C
#: and Python (``nn_core/activations.py: Activation``).
SUPPORTED_ACTIVATIONS = tuple(ACTIVATIONS)
SUPPORTED_OUTPUTS = tuple(OUTPUTS)
#: Largest integer code the "value" scheme accepts: every integer up to 2**24 is a float32.
MAX_EXACT_CODE = 2**24


class ExportError(ValueError):
    """A model directory or an export request that cannot be exported (message says why)."""


@dataclass
class Input:
    """One raw input of the exported predictor.

    Attributes
    ----------
    index : int
        Position in the raw input vector ``x``.
    name, kind : str
        Column name; ``"numeric"`` or ``"categorical"``.
    row : int
        First row of this input's block in the first layer's weight matrix (feature index).
    log1p, mean, std :
        Numeric only: ``z = ((log1p(x) if log1p else x) - mean) / std``.
    categories, codes, code_scheme :
        Categorical only: ``codes[k]`` is the number that selects ``categories[k]``;
        ``code_scheme`` is ``"value"`` (the category's own integer) or ``"index"`` (k).
    impute : float or None
        A model trained with ``--on-invalid impute``: the raw input that replaces a NaN
        (missing) ``x[index]`` before anything else (numeric: the training median;
        categorical: the code of the most frequent training category). ``None``: NaN is
        invalid (numeric) or unseen (categorical), as without imputation.
    missing_row : int or None
        Feature index of the input's missing indicator (1 where ``x[index]`` is NaN), the
        last of its block; ``None`` when the column had no missing training value.
    edges : list of float or None
        Numeric only, a model trained with a piecewise-linear encoding (``--numeric-encoding
        ple``, ``standard+ple``, ...): the bin edges ``b_0 < ... < b_T`` of the encoding of
        ``x`` (``nn_core.preprocessing.piecewise_linear``), whose ``T`` features start at
        :attr:`ple_row`. ``None``: no such encoding.
    knots, scores, ends : list of float or None
        Numeric only, a model trained with a Gaussian-rank encoding (``--numeric-encoding
        quantile``, ...): ``q_1 < ... < q_m``, ``s_1 <= ... <= s_m`` and ``(lo, hi)`` of
        ``g(x)`` (``nn_core.preprocessing.gaussian_rank``), the feature at
        :attr:`rank_row`. ``None``: no such encoding.
    value : bool
        Numeric only: whether the block holds the standardised value ``z`` (at ``row``);
        false where an encoding replaces it.
    rank_row, ple_row : int or None
        Numeric only: feature index of the Gaussian rank ``g(x)`` and of the first of the
        ``T`` piecewise-linear features (the block's layout:
        ``nn_core.preprocessing.block_parts``); ``None`` without that encoding.
    range : list of (float or None) or None
        Numeric only: the allowed ``[low, high]`` that preprocess.json stores (``None``
        sides open), which the checks of rows read from a file apply
        (``Preprocessing.inputs``); it changes no feature. ``None``: none stored.
    """

    index: int
    name: str
    kind: str
    row: int
    log1p: bool = False
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    code_scheme: str = ""
    impute: float | None = None
    missing_row: int | None = None
    edges: list[float] | None = None
    knots: list[float] | None = None
    scores: list[float] | None = None
    ends: list[float] | None = None
    value: bool = True
    rank_row: int | None = None
    ple_row: int | None = None
    range: list[float | None] | None = None

    @property
    def n_knots(self) -> int:
        """Number ``m`` of Gaussian-rank knots (0 without that encoding)."""
        return 0 if self.knots is None else len(self.knots)

    @property
    def n_bins(self) -> int:
        """Number ``T`` of piecewise-linear features (0 without an encoding)."""
        return 0 if self.edges is None else len(self.edges) - 1


@dataclass
class Member:
    """A further network of a combined model (``nn_core/ensemble.py``): its layers, hidden
    activation and weight ``w_k`` in ``z = c + sum_k w_k z_k``."""

    params: list[tuple[np.ndarray, np.ndarray]]
    activation: str
    weight: float


@dataclass
class ExportModel:
    """Everything an exporter needs, checked for consistency.

    Attributes
    ----------
    inputs : list of Input
    params : list of (W, b)
        ``W`` shape (fan_in, fan_out), ``b`` shape (fan_out,), in the model's dtype;
        ``H = f(H_prev W + b)``.
    activation, output : str
        Keys of ``nn_core.activations.ACTIVATIONS`` and ``nn_core.losses.OUTPUTS``.
    leaky_slope : float
    dtype : str
        The network's dtype (``float32`` or ``float64``); C targets always use float32.
    target : str
        Name of the predicted column (for documentation only).
    weight, others, logit_bias, calibration :
        A combined model (``nn_core/ensemble.py``): ``params`` are member 0's layers,
        ``weight`` its ``w_0``, ``others`` members 1..K-1, ``logit_bias`` ``c``, and
        ``calibration`` the model.json entry (``nn_core/calibration.py``) applied to
        ``z = c + sum_k w_k z_k``. A single network: 1, none, 0, None.
    """

    inputs: list[Input]
    params: list[tuple[np.ndarray, np.ndarray]]
    activation: str
    output: str
    leaky_slope: float = LEAKY_SLOPE
    dtype: str = "float32"
    target: str = "Revenue"
    weight: float = 1.0
    others: list[Member] = field(default_factory=list)
    logit_bias: float = 0.0
    calibration: dict | None = None

    @property
    def combined(self) -> bool:
        """Several members, a weight, a bias or a calibration: more than one network's
        output function."""
        return (bool(self.others) or self.weight != 1.0 or self.logit_bias != 0.0
                or self.calibration is not None)

    @property
    def members(self) -> list[Member]:
        """Every member, member 0 (``params``) first."""
        return [Member(self.params, self.activation, self.weight), *self.others]

    @property
    def first_layers(self) -> tuple[np.ndarray, np.ndarray]:
        """Every member's layer 0 side by side (``nn_core.ensemble.side_by_side``): the
        first layer a combined model computes in one pass."""
        return side_by_side([m.params[0] for m in self.members])

    @property
    def numeric(self) -> list[Input]:
        """The numeric inputs, in input order."""
        return [c for c in self.inputs if c.kind == "numeric"]

    @property
    def categorical(self) -> list[Input]:
        """The categorical inputs, in input order."""
        return [c for c in self.inputs if c.kind == "categorical"]

    @property
    def widths(self) -> list[int]:
        """Output width of every layer (hidden layers then the output layer)."""
        return [W.shape[1] for W, _ in self.params]

    @property
    def n_parameters(self) -> int:
        """Number of weights and biases (of every member)."""
        return int(sum(W.size + b.size for m in self.members for W, b in m.params))

    @property
    def valued(self) -> list[Input]:
        """The numeric inputs whose block holds the standardised value ``z``."""
        return [c for c in self.numeric if c.value]

    @property
    def encoded(self) -> list[Input]:
        """The numeric inputs with a piecewise-linear encoding, in input order."""
        return [c for c in self.numeric if c.edges is not None]

    @property
    def ranked(self) -> list[Input]:
        """The numeric inputs with a Gaussian-rank encoding, in input order."""
        return [c for c in self.numeric if c.knots is not None]

    @property
    def encoding_bytes(self) -> int:
        """Bytes of the encodings' float32 tables on a C target: ``2 T`` numbers per
        piecewise-linear encoding of ``T`` bins (edges, reciprocal widths), ``2 m`` per
        Gaussian rank of ``m`` knots (knots, scores) and 8 for its ends."""
        return 8 * (sum(c.n_bins for c in self.encoded)
                    + sum(c.n_knots + 1 for c in self.ranked))

    @property
    def imputed(self) -> list[Input]:
        """The inputs whose NaN is imputed, in input order."""
        return [c for c in self.inputs if c.impute is not None]

    @property
    def columns(self) -> list[dict]:
        """The inputs as ``preprocess.json`` columns (``Preprocessing.columns``)."""
        columns = [
            {"name": c.name, "kind": "numeric", "log1p": c.log1p, "mean": c.mean, "std": c.std}
            if c.kind == "numeric"
            else {"name": c.name, "kind": "categorical", "categories": list(c.categories)}
            for c in self.inputs
        ]
        for column, c in zip(columns, self.inputs, strict=True):
            if c.range is not None:
                column["range"] = list(c.range)
            if c.edges is not None or c.knots is not None:
                column["encoding"] = {"kind": ENCODING_KINDS[c.knots is not None,
                                                             c.edges is not None],
                                      "value": c.value}
            if c.knots is not None:
                column["encoding"].update(knots=list(c.knots), scores=list(c.scores),
                                          ends=list(c.ends))
            if c.edges is not None:
                column["encoding"]["edges"] = list(c.edges)
            if c.impute is not None:
                value = (c.impute if c.kind == "numeric"
                         else c.categories[c.codes.index(int(c.impute))])
                column["impute"] = {"value": value, "indicator": c.missing_row is not None}
        return columns


def categorical_codes(categories: list[str]) -> tuple[str, list[int]]:
    """Choose the integer code of each category.

    When every category is the canonical text of an integer in ``[-2**24, 2**24]`` (e.g. the
    UCI ``Browser`` ids ``"1".."13"``), a category's code is **that integer** ("value"
    scheme): the device passes the number it already has. Otherwise (``Month``, ``Weekend``,
    ``VisitorType``) the code is the category's **index** in the ``categories`` list of
    ``preprocess.json`` ("index" scheme).

    Returns
    -------
    scheme : {"value", "index"}
    codes : list of int, ``codes[k]`` selects ``categories[k]``
    """
    values = []
    for text in categories:
        if not re.fullmatch(r"-?(0|[1-9][0-9]*)", text) or abs(int(text)) > MAX_EXACT_CODE:
            return "index", list(range(len(categories)))
        values.append(int(text))
    return "value", values


def _float32_range(path: str, column: str, what: str, values: list) -> None:
    """Refuse ``values`` of ``column`` that are not finite in float32 (ExportError)."""
    big = [v for v in values if not abs(float(v)) <= float(np.finfo(np.float32).max)]
    if big:
        raise ExportError(f"{path}: column {column!r}: {what} value {big[0]!r} is beyond "
                          "float32's range, in which the exported predictors compute")


def build_inputs(columns: list[dict], n_features: int, path: str) -> list[Input]:
    """Turn ``preprocess.json`` columns into `Input` records and check them against the MLP.

    Raises
    ------
    ExportError
        Duplicate categories, a feature count that differs from the network's input size,
        or a numeric constant (mean, std, edge, knot, score, end) beyond float32's range,
        in which every exported predictor computes.
    """
    inputs, row = [], 0
    for i, c in enumerate(columns):
        first = {part: s.start for part, s in part_slices(c, row).items()}  # of each part
        if c["kind"] == "numeric":
            _float32_range(path, c["name"], "mean and std", [c["mean"], c["std"]])
            inputs.append(Input(i, c["name"], "numeric", row, bool(c["log1p"]),
                                float(c["mean"]), float(c["std"]), value="value" in first,
                                rank_row=first.get("rank"), ple_row=first.get("ple"),
                                range=c.get("range")))
            encoding = c.get("encoding")
            if encoding is not None:
                for key in ("edges", "knots", "scores", "ends"):
                    if key in encoding:
                        _float32_range(path, c["name"], key, encoding[key])
                if "edges" in encoding:
                    inputs[-1].edges = [float(b) for b in encoding["edges"]]
                if "knots" in encoding:
                    inputs[-1].knots = [float(q) for q in encoding["knots"]]
                    inputs[-1].scores = [float(v) for v in encoding["scores"]]
                    inputs[-1].ends = [float(v) for v in encoding["ends"]]
        else:
            cats = list(c["categories"])
            if len(set(cats)) != len(cats):
                raise ExportError(f"{path}: column {c['name']!r} lists a category twice")
            scheme, codes = categorical_codes(cats)
            inputs.append(Input(i, c["name"], "categorical", row, categories=cats,
                                codes=codes, code_scheme=scheme))
        impute = c.get("impute")
        if impute is not None:
            inputs[-1].impute = (float(impute["value"]) if c["kind"] == "numeric"
                                 else float(codes[cats.index(impute["value"])]))
        inputs[-1].missing_row = first.get("missing")
        row += block_width(c)
    if row != n_features:
        raise ExportError(
            f"{path}: the columns make {row} features but the network has {n_features} inputs"
        )
    return inputs


def load_model_dir(model_dir: str | Path) -> tuple[ExportModel, MLP | Ensemble]:
    """Read and check a model directory (through ``nn_core.modeldir.load_model``).

    Returns
    -------
    model : ExportModel
    mlp : nn_core.MLP or nn_core.ensemble.Ensemble
        The loaded network, or the combined model of several (used to report float32
        accuracy).

    Raises
    ------
    ExportError or nn_core.io.ModelFileError
        Missing directory or file, malformed content, or an unsupported architecture.
    """
    model_dir = Path(model_dir)
    predictor = load_model(model_dir, require_preprocessing=True)
    mlp = predictor.network
    # load_model has checked the rest: a known activation and output (every one of them is
    # exportable), finite weights of the right shapes, and the feature count.
    params = [(np.asarray(W), np.asarray(b)) for W, b in mlp.params]
    pre = predictor.preprocessing
    inputs = build_inputs(pre.columns, params[0][0].shape[0], str(model_dir / PREPROCESS_JSON))
    model = ExportModel(
        inputs=inputs,
        params=params,
        activation=mlp.activation,
        output=mlp.output,
        leaky_slope=float(getattr(mlp, "leaky_slope", LEAKY_SLOPE)),
        dtype=str(np.dtype(mlp.dtype)),
        target=pre.target or "target",
    )
    if predictor.ensemble.plain:
        return model, mlp
    model.weight = predictor.members[0][1]
    model.others = [Member([(np.asarray(W), np.asarray(b)) for W, b in m.params], m.activation,
                           w) for m, w in predictor.members[1:]]
    model.logit_bias = predictor.logit_bias
    model.calibration = (None if predictor.calibration is None
                         else predictor.calibration.to_dict())
    return model, predictor.ensemble


# --------------------------------------------------------------------------- reference maths


def features_from_codes(model: ExportModel, X: np.ndarray) -> np.ndarray:
    """The MLP's feature matrix from raw inputs, exactly as the model's preprocessing.

    Each categorical code becomes the position of its category in the block (``K``, the
    unseen bucket, for any other number or NaN; NaN stays NaN, i.e. missing, in an input
    with imputation); then the one transform,
    ``nn_core.preprocessing.features_from_inputs``, builds the features (and imputes).

    Parameters
    ----------
    model : ExportModel
    X : ndarray, shape (n, n_inputs)
        Raw inputs in the exported order (categorical inputs as codes).

    Returns
    -------
    F : ndarray, shape (n, n_features), float64
        Rows with an invalid numeric input are all NaN (an exported predictor returns NaN).
    """
    X = np.asarray(X, dtype=np.float64)
    U = X.copy()
    for c in model.categorical:
        match = X[:, c.index, None] == np.asarray(c.codes, dtype=np.float64)[None, :]
        other = np.nan if c.impute is not None else len(c.codes)
        U[:, c.index] = np.where(match.any(axis=1), match.argmax(axis=1),
                                 np.where(np.isnan(X[:, c.index]), other, len(c.codes)))
    F, invalid = features_from_inputs(model.columns, U)
    F[invalid] = np.nan
    return F


def ple_fraction(x: np.ndarray, edges: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The bin ``k`` of each value and its one fractional component, in float32, as the
    C targets compute the piecewise-linear encoding.

    With ``k`` the number of inner edges ``b_1..b_{T-1}`` at or below ``x`` (0-based bin),
    the encoding is ``e_t = 1`` for ``t <= k`` (1-based ``t``), ``e_{k+1} = (x - b_k) r_k``
    with ``r_k = 1 / (b_{k+1} - b_k)`` (below 0 under ``b_0``, above 1 over ``b_T``), and 0
    after: :func:`nn_core.preprocessing.piecewise_linear` (docs/math.md).

    Returns
    -------
    k : ndarray of intp, shape (n,), in ``[0, T - 1]``
    frac : ndarray of float32, shape (n,)
    """
    b = np.asarray(edges, dtype=np.float64)
    b32, r32 = b.astype(np.float32), (1.0 / np.diff(b)).astype(np.float32)
    x32 = np.asarray(x, dtype=np.float32)
    k = np.searchsorted(b32[1:-1], x32, side="right")
    return k, (x32 - b32[k]) * r32[k]


def gaussian_rank32(x: np.ndarray, knots: list[float], scores: list[float],
                    ends: list[float]) -> np.ndarray:
    """The Gaussian rank ``g(x)`` in float32, as the C targets compute it.

    With float32 knots ``q``, scores ``s`` and ends ``(lo, hi)``: ``lo`` at or below
    ``q_1``, ``hi`` at or above ``q_m`` (compared in float32), else
    ``s_j + (x - q_j) ((s_{j+1} - s_j) / (q_{j+1} - q_j))`` with ``j`` the last knot at or
    below ``x`` (so ``q_j <= x < q_{j+1}``, never a zero width even where two knots round
    to one float32), every operation in float32:
    :func:`nn_core.preprocessing.gaussian_rank` (docs/math.md).

    Returns
    -------
    ndarray of float32, shape (n,)
    """
    q = np.asarray(knots, dtype=np.float64).astype(np.float32)
    s = np.asarray(scores, dtype=np.float64).astype(np.float32)
    lo, hi = np.asarray(ends, dtype=np.float64).astype(np.float32)
    x32 = np.asarray(x, dtype=np.float32)
    if len(q) == 1:  # lo = hi = s_1
        return np.full(x32.shape, lo, dtype=np.float32)
    j = np.clip(np.searchsorted(q, x32, side="right") - 1, 0, len(q) - 2)
    with np.errstate(invalid="ignore"):
        g = s[j] + (x32 - q[j]) * ((s[j + 1] - s[j]) / (q[j + 1] - q[j]))
    return np.where(~(x32 > q[0]), lo, np.where(x32 >= q[-1], hi, g))


def fold_first_layer(model: ExportModel, params: list | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """First-layer weights and bias with the standardisation folded in, as float32.

    ``params``: the layers of another member of a combined model (default: ``model.params``).

    ``W'_i = W_i / s_i`` and ``b' = b - sum_i (m_i / s_i) W_i`` over the rows ``i`` of the
    standardised numeric values (computed in float64, rounded once); one-hot, missing-
    indicator, Gaussian-rank and piecewise-linear rows are the model's rows unchanged.

    Raises
    ------
    ExportError
        A folded value overflows float32.
    """
    W, b = (a.astype(np.float64) for a in (model.params if params is None else params)[0])
    Wf, bf = W.copy(), b.copy()
    for c in model.valued:
        Wf[c.row] = W[c.row] / c.std
        bf -= (c.mean / c.std) * W[c.row]
    if not (np.all(np.isfinite(Wf.astype(np.float32))) and np.all(np.isfinite(bf))):
        raise ExportError("folding the standardisation into layer 0 overflows float32")
    return Wf.astype(np.float32), bf.astype(np.float32)


def quantise_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 weights.

    Returns
    -------
    Q : ndarray, shape (fan_in, fan_out), int8, ``Q_ij = round(W_ij / s_j)`` in [-127, 127]
    s : ndarray, shape (fan_out,), float32, ``s_j = max_i |W_ij| / 127`` (1 for an all-zero
        column, whose weights are all 0 anyway)
    """
    W32 = W.astype(np.float32)
    peak = np.abs(W32).max(axis=0)
    s = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    return _round_half_away(W32 / s).astype(np.int8), s


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero, the rule the C code uses (no libm, no rounding mode)."""
    return np.sign(v) * np.floor(np.abs(v) + v.dtype.type(0.5))


def _quantise_row(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic per-row activation quantisation, as in the generated C (float32 throughout).

    Returns ``(q, t)``: ``q`` int32 codes in [-127, 127], ``t`` (n,) the row scales
    ``max|a| / 127`` (0 for an all-zero row).
    """
    peak = np.abs(a).max(axis=1)
    inv = np.where(peak > 0, np.float32(127) / np.where(peak > 0, peak, 1), 0).astype(np.float32)
    q = _round_half_away(a * inv[:, None]).astype(np.int32)
    return q, (peak / np.float32(127)).astype(np.float32)


def predict_int8(model: ExportModel, X: np.ndarray) -> np.ndarray:
    """NumPy model of the ``c-int8`` predictor (same scheme, float32 rescaling).

    Parameters
    ----------
    model : ExportModel
    X : ndarray, shape (n, n_inputs)
        Raw inputs (categorical inputs as codes).

    Returns
    -------
    ndarray, shape (n,), float64: probabilities (NaN for invalid rows)
    """
    F = features_from_codes(model, X).astype(np.float32)
    invalid = np.isnan(F).any(axis=1)
    F[invalid] = 0
    for c in model.ranked:  # g(x) as the C computes it, in float32
        x = _imputed(c, X)
        F[:, c.rank_row] = gaussian_rank32(np.where(invalid, c.knots[0], x), c.knots, c.scores,
                                           c.ends)
    # the quantised features: the standardised values and the Gaussian ranks
    rows = np.array([c.row for c in model.valued] + [c.rank_row for c in model.ranked],
                    dtype=np.int64)
    onehot = np.ones(F.shape[1], dtype=bool)  # the 0/1 rows: one-hot blocks and indicators
    onehot[rows] = False
    bins, fractions = [], []
    for c in model.encoded:
        onehot[c.ple_row:c.ple_row + c.n_bins] = False
        x = _imputed(c, X)
        k, frac = ple_fraction(np.where(invalid, c.edges[0], x), c.edges)
        bins.append(k)
        fractions.append(frac)
    # quantised together: the standardised values and ranks, then each encoding's fraction
    A = np.concatenate([F[:, rows], np.stack(fractions, axis=1) if fractions else
                        np.zeros((len(F), 0), np.float32)], axis=1)
    H = None
    # a combined model: every member's layer 0 side by side (the c-int8 code's table)
    params = model.params if not model.combined else [model.first_layers]
    for layer, (W, b) in enumerate(params):
        Q, s = quantise_int8(W)
        Q = Q.astype(np.int32)
        if layer == 0:
            q, t = _quantise_row(A) if A.shape[1] else (
                np.zeros((len(F), 0), np.int32), np.zeros(len(F), np.float32))
            acc = q[:, :rows.size] @ Q[rows]
            cat = F[:, onehot].astype(np.int32) @ Q[onehot]
            for e, (c, k) in enumerate(zip(model.encoded, bins, strict=True)):
                # the saturated components (exactly 1) are whole rows, like a one-hot feature
                prefix = np.cumsum(np.vstack([np.zeros((1, Q.shape[1]), np.int32),
                                              Q[c.ple_row:c.ple_row + c.n_bins]]), axis=0)
                cat += prefix[k]
                acc += q[:, rows.size + e, None] * Q[c.ple_row + k]
            Z = (acc.astype(np.float32) * t[:, None] + cat.astype(np.float32)) * s
        else:
            q, t = _quantise_row(H)
            Z = (q @ Q).astype(np.float32) * (t[:, None] * s)
        Z = Z + b.astype(np.float32)
        if model.combined:
            return _members_int8(model, Z, invalid)
        last = layer == len(model.params) - 1
        # The network's own definitions of f and g (nn_core/activations.py, losses.py).
        H = OUTPUTS[model.output](Z) if last else ACTIVATIONS[model.activation].forward(Z)
    p = H[:, 0].astype(np.float64)
    p[invalid] = np.nan
    return p


def _imputed(c: Input, X: np.ndarray) -> np.ndarray:
    """Input ``c``'s raw values (float64), a NaN replaced by the imputed value where the
    model imputes it."""
    x = np.asarray(X, dtype=np.float64)[:, c.index]
    return x if c.impute is None else np.where(np.isnan(x), c.impute, x)


def _members_int8(model: ExportModel, Z0: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """The rest of :func:`predict_int8` for a combined model, from ``Z0`` (n, sum of the
    members' first widths): each member's later layers on its slice (its own per-row
    activation scales), ``z = c + sum_k w_k z_k`` in float32, then the calibration
    (``nn_core/calibration.py``; float64, the C code float32)."""
    z = np.full(len(Z0), model.logit_bias, dtype=np.float32)
    start = 0
    for m in model.members:
        width = m.params[0][0].shape[1]
        H = Z0[:, start:start + width]
        start += width
        for W, b in m.params[1:]:
            H = ACTIVATIONS[m.activation].forward(H)
            Q, s = quantise_int8(W)
            q, t = _quantise_row(H)
            H = (q @ Q.astype(np.int32)).astype(np.float32) * (t[:, None] * s) \
                + b.astype(np.float32)
        z = z + np.float32(m.weight) * H[:, 0]
    z64 = z.astype(np.float64)
    p = (calibration_from_dict(model.calibration, "calibration")(z64)
         if model.calibration is not None else OUTPUTS["sigmoid"](z64))
    p[invalid] = np.nan
    return p


def encode_table(model: ExportModel, df: pd.DataFrame) -> np.ndarray:
    """Raw inputs ``x`` (n, n_inputs) float64 of a table with the input columns.

    Numeric cells are parsed as numbers; categorical cells are compared as canonical text
    (``nn_core.preprocessing.canonical_text``) and replaced by their code, NaN when unseen.
    In an input with imputation a missing cell (``nn_core.preprocessing.missing_mask``) is
    NaN, and an unseen category is +inf (another code that selects the unseen bucket).
    """
    X = np.empty((len(df), len(model.inputs)))
    for c in model.inputs:
        col = df[c.name]
        missing = missing_mask(col) if c.impute is not None else None
        if missing is not None:
            col = col.astype(object).where(~missing, np.nan)
        if c.kind == "numeric":
            X[:, c.index] = np.asarray(col, dtype=np.float64)
        else:
            lookup = dict(zip(c.categories, c.codes, strict=True))
            texts = canonical_series(col.astype(str))
            X[:, c.index] = texts.map(lookup).astype(np.float64).to_numpy()
            if missing is not None:
                X[:, c.index] = np.where(missing, np.nan, np.where(
                    np.isnan(X[:, c.index]), np.inf, X[:, c.index]))
    return X
