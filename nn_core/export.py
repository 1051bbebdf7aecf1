"""Export a trained model directory to small devices: C (float32, int8) and one-file Python.

``python -m nn_core.export MODEL_DIR --format c|c-int8|python|python-pure --out DIR [--name NAME]``

A model directory (``model.json`` + ``weights.npz`` + ``preprocess.json``, written by
``train.py``) describes the whole map from a raw session row to a purchase probability:

    raw row --(log1p, standardise, one-hot)--> feature vector f --(MLP)--> p

Every exported predictor takes the **raw inputs** ``x`` (one value per input column, in the
order of ``preprocess.json``) and does the preprocessing itself:

- a numeric input is passed as-is; the predictor applies ``log1p`` where the column has it
  and the standardisation ``(u - mean) / std``;
- a categorical input is passed as its integer **code** stored in a float (see
  `categorical_codes`); the predictor turns it into the one-hot block, a code that is not in
  the list (another number, a non-integer, NaN) selects the "unseen" bucket, exactly as an
  unseen text does in ``predict.py``;
- invalid numeric inputs, i.e. NaN, +-inf, or a negative value in a ``log1p`` column (the rows
  ``predict.py`` rejects with an error), make the predictor return NaN: a device cannot raise,
  and NaN cannot be mistaken for a probability.

Folding (C targets). One-hot features are 0/1, so ``f W`` for a one-hot block is a single row
of ``W``: the C code adds that row instead of multiplying a mostly-zero vector. For a numeric
feature ``z = (u - m) / s`` the standardisation is folded into the first layer::

    z W_i = u (W_i / s) - (m / s) W_i   =>   W'_i = W_i / s,   b' = b - sum_i (m_i / s_i) W_i

(computed in float64 from the model's weights and rounded once to float32), so the C
predictor does one multiply-add per numeric input and hidden unit, and no division.

int8 scheme (``c-int8``). Weights: symmetric per output channel,
``q_ij = round(W_ij / s_j)`` with ``s_j = max_i |W_ij| / 127``. Activations: symmetric
*dynamic per row* scaling before every layer, ``a_q = round(a / t)`` with
``t = max_i |a_i| / 127`` (no calibration data needed, and no value ever clips). Products
are accumulated in int32 and rescaled once: ``h_j = t s_j sum_i a_q,i q_ij + b_j`` (biases and
scales stay float32). In the first layer the standardised numeric features ``z`` are the
quantised activations, while the one-hot inputs are exactly 1 and need no activation scale:
``h_j = s_j (t sum_i z_q,i q_ij + sum_c q_{row(c),j}) + b_j``. Standardisation is therefore
*not* folded in int8 (raw inputs span 1e-5..6e4; folding ``1/s`` into the weights would let
the widest column dictate each channel's scale). Rounding is half away from zero.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .activations import ACTIVATIONS
from .losses import OUTPUTS

FORMATS = ("c", "c-int8", "python", "python-pure")
DEFAULT_NAMES = {
    "c": "model",
    "c-int8": "model_int8",
    "python": "model_np",
    "python-pure": "model_pure",
}
EXPORT_FORMAT = "purchase-propensity-export"
SUPPORTED_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
SUPPORTED_OUTPUTS = ("sigmoid", "identity")
#: Largest integer code the "value" scheme accepts: every integer up to 2**24 is a float32.
MAX_EXACT_CODE = 2**24
#: Flags the issue fixes for the Cortex-M4 size measurement.
ARM_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99")

UNSEEN_RULE = (
    "any other code (another number, a non-integer, NaN or +-inf) selects the unseen-category "
    "bucket, like a text value never seen in training"
)
INVALID_RULE = (
    "NaN, +-inf, or a negative value in a log1p input make the predictor return NaN "
    "(predict.py rejects such rows with an error)"
)


class ExportError(ValueError):
    """A model directory or an export request that cannot be exported (message says why)."""


# --------------------------------------------------------------------------- model description


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
    leaky_slope : float
    dtype : str
        The network's dtype (``float32`` or ``float64``); C targets always use float32.
    target : str
        Name of the predicted column (for documentation only).
    """

    inputs: list[Input]
    params: list[tuple[np.ndarray, np.ndarray]]
    activation: str
    output: str
    leaky_slope: float = 0.01
    dtype: str = "float32"
    target: str = "Revenue"

    @property
    def numeric(self) -> list[Input]:
        return [c for c in self.inputs if c.kind == "numeric"]

    @property
    def categorical(self) -> list[Input]:
        return [c for c in self.inputs if c.kind == "categorical"]

    @property
    def widths(self) -> list[int]:
        """Output width of every layer (hidden layers then the output layer)."""
        return [W.shape[1] for W, _ in self.params]

    @property
    def n_parameters(self) -> int:
        return int(sum(W.size + b.size for W, b in self.params))


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


def build_inputs(columns: list[dict], n_features: int, path: str) -> list[Input]:
    """Turn ``preprocess.json`` columns into `Input` records and check them against the MLP.

    Raises
    ------
    ExportError
        Duplicate categories, or a feature count that differs from the network's input size.
    """
    inputs, row = [], 0
    for i, c in enumerate(columns):
        if c["kind"] == "numeric":
            inputs.append(Input(i, c["name"], "numeric", row, bool(c["log1p"]),
                                float(c["mean"]), float(c["std"])))
            row += 1
        else:
            cats = list(c["categories"])
            if len(set(cats)) != len(cats):
                raise ExportError(f"{path}: column {c['name']!r} lists a category twice")
            scheme, codes = categorical_codes(cats)
            inputs.append(Input(i, c["name"], "categorical", row, categories=cats,
                                codes=codes, code_scheme=scheme))
            row += len(cats) + 1
    if row != n_features:
        raise ExportError(
            f"{path}: the columns make {row} features but the network has {n_features} inputs"
        )
    return inputs


def load_model_dir(model_dir: str | Path) -> tuple[ExportModel, object]:
    """Read and check a model directory.

    Returns
    -------
    model : ExportModel
    mlp : nn_core.MLP
        The loaded network (used to report float32 accuracy).

    Raises
    ------
    ExportError or nn_core.io.ModelFileError
        Missing directory or file, malformed content, or an unsupported architecture.
    """
    from features.tabular import Preprocessor
    from nn_core import MLP
    from nn_core.activations import LEAKY_SLOPE

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"{model_dir}: model directory not found")
    mlp = MLP.load(model_dir)
    pre = Preprocessor.load(model_dir)
    params = [(np.asarray(W), np.asarray(b)) for W, b in mlp.params]
    for layer, (W, b) in enumerate(params):
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ExportError(f"{model_dir / 'weights.npz'}: layer {layer} has non-finite weights")
    if mlp.activation not in SUPPORTED_ACTIVATIONS:
        raise ExportError(f"{model_dir / 'model.json'}: activation {mlp.activation!r} is not "
                          f"exportable (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    if mlp.output not in SUPPORTED_OUTPUTS:
        raise ExportError(f"{model_dir / 'model.json'}: output {mlp.output!r} is not exportable")
    inputs = build_inputs(pre.columns, params[0][0].shape[0], str(model_dir / "preprocess.json"))
    model = ExportModel(
        inputs=inputs,
        params=params,
        activation=mlp.activation,
        output=mlp.output,
        leaky_slope=float(getattr(mlp, "leaky_slope", LEAKY_SLOPE)),
        dtype=str(np.dtype(mlp.dtype)),
        target=pre.target or "target",
    )
    return model, mlp


# --------------------------------------------------------------------------- reference maths


def features_from_codes(model: ExportModel, X: np.ndarray) -> np.ndarray:
    """The MLP's feature matrix from raw inputs, exactly as ``Preprocessor.transform``.

    Parameters
    ----------
    X : ndarray, shape (n, n_inputs)
        Raw inputs in the exported order (categorical inputs as codes).

    Returns
    -------
    F : ndarray, shape (n, n_features), float64
        Rows with an invalid numeric input are all NaN.
    """
    X = np.asarray(X, dtype=np.float64)
    F = np.zeros((X.shape[0], model.params[0][0].shape[0]))
    invalid = np.zeros(X.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        for c in model.inputs:
            x = X[:, c.index]
            if c.kind == "numeric":
                invalid |= ~np.isfinite(x) | ((x < 0) if c.log1p else False)
                u = np.log1p(np.where(x < 0, 0.0, x)) if c.log1p else x
                F[:, c.row] = (u - c.mean) / c.std
            else:
                match = x[:, None] == np.asarray(c.codes, dtype=np.float64)[None, :]
                F[:, c.row:c.row + len(c.codes)] = match
                F[:, c.row + len(c.codes)] = ~match.any(axis=1)
    F[invalid] = np.nan
    return F


def fold_first_layer(model: ExportModel) -> tuple[np.ndarray, np.ndarray]:
    """First-layer weights and bias with the standardisation folded in, as float32.

    ``W'_i = W_i / s_i`` and ``b' = b - sum_i (m_i / s_i) W_i`` over the numeric rows ``i``
    (computed in float64, rounded once); one-hot rows are the model's rows unchanged.
    """
    W, b = (a.astype(np.float64) for a in model.params[0])
    Wf, bf = W.copy(), b.copy()
    for c in model.numeric:
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
    X : ndarray, shape (n, n_inputs)
        Raw inputs (categorical inputs as codes).

    Returns
    -------
    ndarray, shape (n,), float64: probabilities (NaN for invalid rows)
    """
    F = features_from_codes(model, X).astype(np.float32)
    invalid = np.isnan(F).any(axis=1)
    F[invalid] = 0
    rows = np.array([c.row for c in model.numeric], dtype=np.int64)
    onehot = np.ones(F.shape[1], dtype=bool)
    onehot[rows] = False
    H = None
    for layer, (W, b) in enumerate(model.params):
        Q, s = quantise_int8(W)
        Q = Q.astype(np.int32)
        if layer == 0:
            q, t = _quantise_row(F[:, rows]) if rows.size else (
                np.zeros((len(F), 0), np.int32), np.zeros(len(F), np.float32))
            acc = q @ Q[rows]
            cat = F[:, onehot].astype(np.int32) @ Q[onehot]
            Z = (acc.astype(np.float32) * t[:, None] + cat.astype(np.float32)) * s
        else:
            q, t = _quantise_row(H)
            Z = (q @ Q).astype(np.float32) * (t[:, None] * s)
        Z = Z + b.astype(np.float32)
        last = layer == len(model.params) - 1
        # The network's own definitions of f and g (nn_core/activations.py).
        H = OUTPUTS[model.output](Z) if last else ACTIVATIONS[model.activation](Z)
    p = H[:, 0].astype(np.float64)
    p[invalid] = np.nan
    return p


def encode_table(model: ExportModel, df) -> np.ndarray:
    """Raw inputs ``x`` (n, n_inputs) float64 of a table with the input columns.

    Numeric cells are parsed as numbers; categorical cells are compared as canonical text
    (``features.tabular.canonical_text``) and replaced by their code, NaN when unseen.
    """
    from features.tabular import canonical_series

    X = np.empty((len(df), len(model.inputs)))
    for c in model.inputs:
        col = df[c.name]
        if c.kind == "numeric":
            X[:, c.index] = np.asarray(col, dtype=np.float64)
        else:
            lookup = dict(zip(c.categories, c.codes, strict=True))
            texts = canonical_series(col.astype(str))
            X[:, c.index] = texts.map(lookup).astype(np.float64).to_numpy()
    return X


# --------------------------------------------------------------------------- formatting helpers


def c_float(v: float) -> str:
    """C float literal that parses back to exactly the float32 ``v``.

    The shortest decimal that round-trips float32 (NumPy's repr) plus ``f``; if a decimal
    double-rounding trap would change the value, the exact double repr is used instead.
    """
    f = np.float32(v)
    text = str(f)
    if np.float32(float(text)) != f:
        text = repr(float(f))
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return text + "f"


def py_float(v: float) -> str:
    """Python float literal equal to the exact value of ``v`` (float32 values are doubles)."""
    return repr(float(v))


def _c_array(ctype: str, name: str, values, fmt, per_line: int = 8) -> str:
    values = list(np.asarray(values).ravel())
    items = [fmt(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(values)}] = {{\n    {body}\n}};\n"


def input_table(model: ExportModel) -> list[dict]:
    """The NAME.json description of the raw inputs, in order."""
    rows = []
    for c in model.inputs:
        if c.kind == "numeric":
            rows.append({
                "index": c.index, "name": c.name, "kind": "numeric", "log1p": c.log1p,
                "mean": c.mean, "std": c.std,
                "valid": "finite, >= 0" if c.log1p else "finite",
            })
        else:
            rows.append({
                "index": c.index, "name": c.name, "kind": "categorical",
                "code": ("the category's own integer value" if c.code_scheme == "value"
                         else "the index of the category in 'values' (0-based)"),
                "code_scheme": c.code_scheme,
                "values": c.categories, "codes": c.codes, "unseen": UNSEEN_RULE,
            })
    return rows


def table_comment(model: ExportModel, prefix: str) -> str:
    """The input table as comment lines (C: prefix ' * ', Python: prefix '    ')."""
    lines = ["x[i]  name                          kind         how to pass it"]
    for c in model.inputs:
        if c.kind == "numeric":
            how = ("raw value >= 0 (log1p applied inside)" if c.log1p
                   else "raw value")
            kind = "numeric"
        else:
            kind = "categorical"
            if c.code_scheme == "value":
                how = "code = the value itself: " + " ".join(c.categories)
            else:
                how = "code = index: " + " ".join(f"{k}={cat}" for k, cat in
                                                  zip(c.codes, c.categories, strict=True))
        lines.append(f"x[{c.index:<2d}] {c.name:<29s} {kind:<12s} {how}")
    lines += ["Categorical: any other code (another number, a non-integer, NaN, +-inf) selects",
              "  the unseen-category bucket, like a text value never seen in training.",
              "Numeric: NaN, +-inf, or a negative value in a log1p input -> the result is NaN",
              "  (predict.py rejects such rows with an error; a device cannot raise)."]
    return "\n".join((prefix + line).rstrip() for line in lines)


# --------------------------------------------------------------------------- C, shared parts


def _c_activation(model: ExportModel, buf: str, n: int, name: str) -> str:
    act = model.activation
    if act == "identity":
        return ""
    if act == "relu":
        body = f"{buf}[j] = {buf}[j] > 0.0f ? {buf}[j] : 0.0f;"
    elif act == "leaky_relu":
        body = f"{buf}[j] = {buf}[j] > 0.0f ? {buf}[j] : {c_float(model.leaky_slope)} * {buf}[j];"
    elif act == "tanh":
        body = f"{buf}[j] = tanhf({buf}[j]);"
    else:
        body = f"{buf}[j] = {name}_sigmoid({buf}[j]);"
    return f"    for (j = 0; j < {n}; ++j) {{\n        {body}\n    }}\n"


def _c_validity(model: ExportModel) -> str:
    """``if (...) return NAN;`` for the invalid-numeric rule (NaN fails every comparison)."""
    tests = []
    for c in model.numeric:
        v = f"x[{c.index}]"
        tests.append(f"!({v} >= 0.0f && {v} < INFINITY)" if c.log1p
                     else f"!({v} > -INFINITY && {v} < INFINITY)")
    if not tests:
        return ""
    cond = "\n        || ".join(tests)
    return f"    /* invalid numeric input (NaN, +-inf, negative under log1p) -> NaN */\n" \
           f"    if ({cond}) {{\n        return NAN;\n    }}\n"


def _c_category_lookup(model: ExportModel, name: str) -> tuple[str, dict[int, str]]:
    """Tables and an expression per categorical input that maps its code to the block index.

    Returns
    -------
    decls : str
        ``static const`` tables needed by the lookups.
    exprs : dict input index -> C expression of type int in [0, K] (K = unseen bucket)
    """
    decls, exprs = [], {}
    for c in model.categorical:
        K, lo, hi = len(c.codes), min(c.codes), max(c.codes)
        v = f"x[{c.index}]"
        if c.codes == list(range(lo, lo + K)):
            exprs[c.index] = f"{name}_code_offset({v}, {lo}, {K})"
        elif hi - lo < 256 and K < 255:
            lut = [K] * (hi - lo + 1)
            for k, code in enumerate(c.codes):
                lut[code - lo] = k
            table = f"{name}_LUT{c.index}"
            decls.append(f"/* {c.name}: block index of code lo + i ({K} = unseen) */\n"
                         + _c_array("unsigned char", table, lut, str, 16))
            exprs[c.index] = f"{name}_code_lut({v}, {lo}, {hi - lo + 1}, {table}, {K})"
        else:
            table = f"{name}_CODES{c.index}"
            decls.append(f"/* {c.name}: code of each category, in block order */\n"
                         + _c_array("float", table, c.codes, c_float))
            exprs[c.index] = f"{name}_code_search({v}, {table}, {K})"
    return "".join(decls), exprs


def _c_helpers(model: ExportModel, name: str, exprs: dict[int, str], quantise: bool) -> str:
    """The static helper functions that the generated predictor actually uses.

    ``quantise`` (int8): activations get quantised. Unused static functions would break
    ``-Werror``, so only the needed ones are emitted. The layers themselves are written out
    inline with literal sizes (`_c_loop`): with constant trip counts the compiler keeps the
    accumulators in vector registers (2.7x faster than a generic dense() on x86-64, see
    docs/benchmarks.md), and there is no data-dependent branch (constant time).
    """
    used = " ".join(exprs.values())
    out = []
    if f"{name}_code_offset(" in used or f"{name}_code_lut(" in used:
        out.append(f"""\
/* Block index of an integer code in [lo, lo + n - 1]: the code minus lo; anything else
   (other numbers, non-integers, NaN: every comparison with NaN is false) -> n (unseen). */
static int {name}_code_offset(float v, int lo, int n)
{{
    int c;
    if (!(v >= (float)lo && v <= (float)(lo + n - 1))) {{
        return n;
    }}
    c = (int)v;
    return (float)c == v ? c - lo : n;
}}
""")
    if f"{name}_code_lut(" in used:
        out.append(f"""\
/* Block index through a table over the code range [lo, lo + n - 1]; unseen -> k_unseen. */
static int {name}_code_lut(float v, int lo, int n, const unsigned char *lut, int k_unseen)
{{
    const int i = {name}_code_offset(v, lo, n);
    return i < n ? (int)lut[i] : k_unseen;
}}
""")
    if f"{name}_code_search(" in used:
        out.append(f"""\
/* Block index by search: position of v in codes, n (unseen) when absent (or NaN). */
static int {name}_code_search(float v, const float *codes, int n)
{{
    int k = 0;
    while (k < n && codes[k] != v) {{
        ++k;
    }}
    return k;
}}
""")
    if model.output == "sigmoid" or model.activation == "sigmoid":
        out.append(f"""\
/* 1 / (1 + e^-z) without overflow: exp of a non-positive number only. */
static float {name}_sigmoid(float z)
{{
    float e;
    if (z >= 0.0f) {{
        return 1.0f / (1.0f + expf(-z));
    }}
    e = expf(z);
    return e / (1.0f + e);
}}
""")
    if quantise:
        out.append(f"""\
/* Round half away from zero (|v| <= 127.5 here, so the int conversion is defined). */
static signed char {name}_round8(float v)
{{
    return (signed char)(v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v));
}}

/* Dynamic symmetric quantisation of a[0..n-1]: q = round(a * 127 / max|a|).
   Returns the scale t = max|a| / 127 (0 for an all-zero vector, then q = 0). */
static float {name}_quantise(signed char *q, const float *a, int n)
{{
    float peak = 0.0f, inv;
    int i;
    for (i = 0; i < n; ++i) {{
        const float m = a[i] >= 0.0f ? a[i] : -a[i];
        peak = m > peak ? m : peak;
    }}
    inv = peak > 0.0f ? 127.0f / peak : 0.0f;
    for (i = 0; i < n; ++i) {{
        q[i] = {name}_round8(a[i] * inv);
    }}
    return peak / 127.0f;
}}
""")
    return "\n".join(out)


def _c_loop(n: int, statement: str, var: str = "j", indent: str = "    ") -> str:
    """``for (var = 0; var < n; ++var) { statement }`` with a literal bound."""
    return (f"{indent}for ({var} = 0; {var} < {n}; ++{var}) {{\n"
            f"{indent}    {statement}\n{indent}}}\n")


def _network_line(model: ExportModel, numeric_type: str) -> str:
    widths = model.widths
    parts = [f"{model.params[0][0].shape[0]} features ({len(model.inputs)} raw inputs)"]
    parts += [f"{w} {model.activation}" for w in widths[:-1]]
    parts.append(f"{widths[-1]} {model.output}")
    return "Network: " + " -> ".join(parts) + f", {numeric_type}."


def _c_header(model: ExportModel, name: str, fmt: str, ram: int, numeric_type: str) -> str:
    guard = f"{name.upper()}_H_"
    what = ("probability" if model.output == "sigmoid" else "predicted value")
    return f"""\
/* {name}.h: purchase-propensity predictor generated by nn_core.export (format {fmt}).
 *
 * float {name}_predict(const float *x) returns the {what} of {model.target}
 * for one session. x holds {name.upper()}_N_INPUTS raw inputs, in this order:
 *
{table_comment(model, " *   ")}
 *
 * {_network_line(model, numeric_type)}
 * Preprocessing (log1p, standardisation, one-hot, unseen bucket) happens inside.
 * No malloc and no writable globals (reentrant); {ram} bytes of stack buffers.
 * Needs only <math.h> (link with -lm where libm is separate). C99.
 */
#ifndef {guard}
#define {guard}

#define {name.upper()}_N_INPUTS {len(model.inputs)}

float {name}_predict(const float *x);

#endif /* {guard} */
"""


def _c_source_top(name: str, fmt: str) -> str:
    return f"""\
/* {name}.c: generated by nn_core.export (format {fmt}); see {name}.h for the inputs. */
#include <math.h>

#include "{name}.h"

"""


def generate_c(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """Float32 C predictor: ``NAME.h`` and ``NAME.c``.

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes``, ``ram_bytes`` (stack buffers) and ``arrays``
        (C array name -> float32 values, for tests that parse the numbers back)
    """
    W0, b0 = fold_first_layer(model)
    layers = [(W0, b0)] + [(W.astype(np.float32), b.astype(np.float32))
                           for W, b in model.params[1:]]
    widths = model.widths
    maxw = max(widths)
    arrays: dict[str, np.ndarray] = {}
    decls = [f"#define {name.upper()}_MAXW {maxw} /* widest layer */\n"]
    for layer, (W, b) in enumerate(layers):
        note = (" numeric rows divided by std, bias with the means folded in;"
                " one-hot rows unchanged" if layer == 0 else "")
        decls.append(f"/* layer {layer}: weights row-major ({W.shape[0]}, {W.shape[1]}),"
                     f" bias ({b.shape[0]});{note} */\n")
        for arr_name, arr in ((f"{name}_W{layer}", W), (f"{name}_B{layer}", b)):
            decls.append(_c_array("float", arr_name, arr, c_float))
            arrays[arr_name] = arr
    lookup_decls, exprs = _c_category_lookup(model, name)
    h0 = widths[0]
    # Each layer starts from its bias. "b[j] + 0.0f" is not a plain copy (it turns -0 into
    # +0), so GCC does not replace the loop by a call to memcpy, which would be the only
    # non-math.h symbol of the object file.
    body = [_c_validity(model), "    /* layer 0 from the raw inputs */\n",
            _c_loop(h0, f"buf0[j] = {name}_B0[j] + 0.0f;")]
    for c in model.inputs:
        acc = "buf0[j] +="
        if c.kind == "numeric":
            u = f"log1pf(x[{c.index}])" if c.log1p else f"x[{c.index}]"
            body.append(f"    u = {u}; /* {c.name}: standardisation folded into row {c.row} */\n"
                        + _c_loop(h0, f"{acc} u * {name}_W0[{c.row * h0} + j];"))
        else:
            body.append(f"    w = {name}_W0 + ({c.row} + {exprs[c.index]}) * {h0};"
                        f" /* {c.name}: one-hot row */\n" + _c_loop(h0, f"{acc} w[j];"))
    cur = 0
    for layer in range(len(layers)):
        n_out = widths[layer]
        if layer > 0:
            n_in, out, inp = layers[layer][0].shape[0], f"buf{1 - cur}", f"buf{cur}"
            body.append(f"    /* layer {layer} */\n"
                        + _c_loop(n_out, f"{out}[j] = {name}_B{layer}[j] + 0.0f;")
                        + f"    for (i = 0; i < {n_in}; ++i) {{\n"
                        + f"        u = {inp}[i];\n"
                        + _c_loop(n_out, f"{out}[j] += u * {name}_W{layer}[i * {n_out} + j];",
                                  indent="        ")
                        + "    }\n")
            cur = 1 - cur
        if layer < len(layers) - 1:
            body.append(_c_activation(model, f"buf{cur}", n_out, name))
    final = f"{name}_sigmoid(buf{cur}[0])" if model.output == "sigmoid" else f"buf{cur}[0]"
    body.append(f"    return {final};\n")
    n_buf = 2 if len(layers) > 1 else 1
    buffers = ", ".join(f"buf{i}[{name.upper()}_MAXW]" for i in range(n_buf))
    locals_ = [f"float {buffers};"]
    if model.numeric or len(layers) > 1:
        locals_.append("float u;")
    if model.categorical:
        locals_.append("const float *w;")
    locals_.append("int i, j;" if len(layers) > 1 else "int j;")
    ram = 4 * maxw * n_buf
    source = (_c_source_top(name, "c") + "".join(decls) + lookup_decls + "\n"
              + _c_helpers(model, name, exprs, quantise=False)
              + f"\nfloat {name}_predict(const float *x)\n{{\n"
              + "".join(f"    {v}\n" for v in locals_) + "".join(body) + "}\n")
    files = {f"{name}.h": _c_header(model, name, "c", ram, "float32"), f"{name}.c": source}
    weight_bytes = sum(a.nbytes for a in arrays.values()) + _lookup_bytes(model)
    return files, {"weight_bytes": weight_bytes, "ram_bytes": ram, "arrays": arrays}


def _lookup_bytes(model: ExportModel) -> int:
    """Bytes of the code tables `_c_category_lookup` emits."""
    total = 0
    for c in model.categorical:
        lo, hi, K = min(c.codes), max(c.codes), len(c.codes)
        if c.codes == list(range(lo, lo + K)):
            continue
        total += (hi - lo + 1) if (hi - lo < 256 and K < 255) else 4 * K
    return total


def generate_c_int8(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """Int8 C predictor (scheme in the module docstring): ``NAME.h`` and ``NAME.c``.

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes``, ``float32_weight_bytes``, ``ram_bytes``, ``arrays``
    """
    widths = model.widths
    numeric = model.numeric
    n_num = len(numeric)
    maxw = max(widths)
    maxq = max([n_num, *widths[:-1]])
    quantise = maxq > 0
    up = name.upper()
    arrays: dict[str, np.ndarray] = {}
    decls = [f"#define {up}_MAXW {maxw} /* widest layer */\n"]
    if quantise:
        decls.append(f"#define {up}_MAXQ {maxq} /* widest quantised layer input */\n")
    decls.append(f"/* int holds the int32 accumulators (C only promises 16 bits). */\n"
                 f"typedef char {name}_int_has_32_bits[sizeof(int) >= 4 ? 1 : -1];\n")
    for layer, (W, b) in enumerate(model.params):
        Q, s = quantise_int8(W)
        decls.append(f"/* layer {layer}: int8 weights row-major ({W.shape[0]}, {W.shape[1]}),"
                     f" per-output scales, float bias */\n")
        for arr_name, arr, ctype, fmt in (
            (f"{name}_Q{layer}", Q, "signed char", str),
            (f"{name}_S{layer}", s, "float", c_float),
            (f"{name}_B{layer}", b.astype(np.float32), "float", c_float),
        ):
            decls.append(_c_array(ctype, arr_name, arr, fmt, 16 if ctype == "signed char" else 8))
            arrays[arr_name] = arr
    lookup_decls, exprs = _c_category_lookup(model, name)
    h0 = widths[0]
    body = [_c_validity(model)]
    if n_num:
        body.append("    /* standardised numeric features, quantised with one per-row scale */\n")
        for k, c in enumerate(numeric):
            u = f"log1pf(x[{c.index}])" if c.log1p else f"x[{c.index}]"
            body.append(f"    z[{k}] = ({u} - {c_float(c.mean)}) * {c_float(1.0 / c.std)};"
                        f" /* {c.name} */\n")
        body.append(f"    t = {name}_quantise(q, z, {n_num});\n")
    # The first update of acc / cat assigns (no zeroing loop: GCC would call memset).
    body.append("    /* layer 0: numeric rows times q in acc, one-hot rows (value 1) in cat */\n")
    for k, c in enumerate(numeric):
        op = "=" if k == 0 else "+="
        body.append(f"    a = q[{k}]; /* {c.name} */\n"
                    + _c_loop(h0, f"acc[j] {op} a * {name}_Q0[{c.row * h0} + j];"))
    for k, c in enumerate(model.categorical):
        op = "=" if k == 0 else "+="
        body.append(f"    w = {name}_Q0 + ({c.row} + {exprs[c.index]}) * {h0};"
                    f" /* {c.name}: one-hot row */\n" + _c_loop(h0, f"cat[j] {op} w[j];"))
    combine = " + ".join((["(float)acc[j] * t"] if n_num else [])
                         + (["(float)cat[j]"] if model.categorical else []))
    body.append(_c_loop(h0, f"h[j] = ({combine}) * {name}_S0[j] + {name}_B0[j];"))
    for layer in range(len(model.params)):
        n_out = widths[layer]
        if layer > 0:
            n_in = model.params[layer][0].shape[0]
            body.append(f"    /* layer {layer} */\n    t = {name}_quantise(q, h, {n_in});\n"
                        + "    a = q[0];\n"
                        + _c_loop(n_out, f"acc[j] = a * {name}_Q{layer}[j];")
                        + f"    for (i = 1; i < {n_in}; ++i) {{\n        a = q[i];\n"
                        + _c_loop(n_out, f"acc[j] += a * {name}_Q{layer}[i * {n_out} + j];",
                                  indent="        ")
                        + "    }\n"
                        + _c_loop(n_out, f"h[j] = (float)acc[j] * (t * {name}_S{layer}[j])"
                                         f" + {name}_B{layer}[j];"))
        if layer < len(model.params) - 1:
            body.append(_c_activation(model, "h", n_out, name))
    final = f"{name}_sigmoid(h[0])" if model.output == "sigmoid" else "h[0]"
    body.append(f"    return {final};\n")
    locals_ = [f"float h[{up}_MAXW];"]
    if n_num or len(model.params) > 1:
        locals_.append(f"int acc[{up}_MAXW];")
    if model.categorical:
        locals_.append(f"int cat[{up}_MAXW];")
    if quantise:
        locals_ += [f"signed char q[{up}_MAXQ];", "float t;", "int a;"]
    if n_num:
        locals_.append(f"float z[{n_num}];")
    if model.categorical:
        locals_.append("const signed char *w;")
    locals_.append("int i, j;" if len(model.params) > 1 else "int j;")
    # stack: h (float) + acc, cat (int32) + q (int8) + z (float)
    ram = (4 * maxw * (1 + (n_num > 0 or len(model.params) > 1) + bool(model.categorical))
           + (maxq if quantise else 0) + 4 * n_num)
    source = (_c_source_top(name, "c-int8") + "".join(decls) + lookup_decls + "\n"
              + _c_helpers(model, name, exprs, quantise=quantise)
              + f"\nfloat {name}_predict(const float *x)\n{{\n"
              + "".join(f"    {v}\n" for v in locals_) + "".join(body) + "}\n")
    files = {f"{name}.h": _c_header(model, name, "c-int8", ram,
                                    "int8 weights and activations, int32 accumulation")}
    files[f"{name}.c"] = source
    weight_bytes = sum(a.nbytes for a in arrays.values()) + 8 * n_num + _lookup_bytes(model)
    float_bytes = 4 * model.n_parameters + _lookup_bytes(model)
    return files, {"weight_bytes": weight_bytes, "float32_weight_bytes": float_bytes,
                   "ram_bytes": ram, "arrays": arrays}


# --------------------------------------------------------------------------- Python targets

_PY_CANONICAL = '''

def _canonical(value):
    """Canonical text of a categorical value, as features.tabular.canonical_text."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    text = str(value).strip()
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return text


def encode(record):
    """Raw input row from a record {column name: value} (text or number, as in the CSV).

    Categorical values are looked up by their canonical text; an unseen one becomes NaN,
    which the predictor treats as an unseen code.
    """
    x = []
    for c in INPUTS:
        value = record[c["name"]]
        if c["kind"] == "numeric":
            x.append(float(value))
        else:
            code = dict(zip(c["values"], c["codes"])).get(_canonical(value))
            x.append(float("nan") if code is None else float(code))
    return x
'''

_PY_NUMPY_BODY = '''

def _activate(name, Z):
    if name == "relu":
        return Z * (Z > 0)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, Z.dtype.type(LEAKY_SLOPE) * Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "sigmoid":
        return np.exp(-np.logaddexp(Z.dtype.type(0), -Z))
    return Z


def features(X):
    """Feature matrix F (n, N_FEATURES) float64 of raw inputs X, and the invalid-row mask."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(INPUTS):
        raise ValueError(f"X must have shape (n, {len(INPUTS)}), got {X.shape}")
    F = np.zeros((X.shape[0], N_FEATURES))
    invalid = np.zeros(X.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        for c, row in zip(INPUTS, _ROWS):
            x = X[:, c["index"]]
            if c["kind"] == "numeric":
                invalid |= ~np.isfinite(x) | ((x < 0) & c["log1p"])
                u = np.log1p(np.where(x < 0, 0.0, x)) if c["log1p"] else x
                F[:, row] = (u - c["mean"]) / c["std"]
            else:
                k = len(c["codes"])
                match = x[:, None] == np.asarray(c["codes"], dtype=np.float64)[None, :]
                F[:, row:row + k] = match
                F[:, row + k] = ~match.any(axis=1)
    return F, invalid


def predict_proba(X):
    """Predictions (n,) float64 for raw input rows X (n, N_INPUTS); NaN for invalid rows."""
    F, invalid = features(X)
    H = F.astype(DTYPE)
    H[invalid] = 0
    for layer, (W, b) in enumerate(LAYERS):
        H = _activate(OUTPUT if layer == len(LAYERS) - 1 else ACTIVATION, H @ W + b)
    p = H[:, 0].astype(np.float64)
    p[invalid] = np.nan
    return p


def predict(x):
    """Prediction for one raw input row x (sequence of N_INPUTS numbers)."""
    return float(predict_proba(np.asarray(x, dtype=np.float64)[None, :])[0])
'''

_PY_PURE_BODY = '''

def _activate(name, h):
    if name == "relu":
        return [v if v > 0 else 0.0 for v in h]
    if name == "leaky_relu":
        return [v if v > 0 else LEAKY_SLOPE * v for v in h]
    if name == "tanh":
        return [math.tanh(v) for v in h]
    if name == "sigmoid":
        return [_sigmoid(v) for v in h]
    return h


def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(x):
    """Prediction for one raw input row x (sequence of N_INPUTS numbers); NaN if invalid."""
    if len(x) != len(INPUTS):
        raise ValueError(f"x must have {len(INPUTS)} values, got {len(x)}")
    x = [float(v) for v in x]
    W0, b0 = LAYERS[0]
    h = list(b0)
    for c, row in zip(INPUTS, _ROWS):
        v = x[c["index"]]
        if c["kind"] == "numeric":
            if not (math.isfinite(v) and (v >= 0 or not c["log1p"])):
                return float("nan")
            z = ((math.log1p(v) if c["log1p"] else v) - c["mean"]) / c["std"]
            h = [hj + z * wj for hj, wj in zip(h, W0[row])]
        else:
            codes = c["codes"]
            k = codes.index(v) if v in codes else len(codes)  # NaN is never "in"
            h = [hj + wj for hj, wj in zip(h, W0[row + k])]
    for layer in range(1, len(LAYERS)):
        h = _activate(ACTIVATION, h)
        W, b = LAYERS[layer]  # W stored by output unit: W[j] = column j
        h = [bj + sum(a * w for a, w in zip(h, col)) for bj, col in zip(b, W)]
    return _activate(OUTPUT, h)[0]


def predict_proba(rows):
    """Predictions for a sequence of raw input rows."""
    return [predict(x) for x in rows]
'''


def _py_list(values, per_line: int = 6, indent: str = "    ") -> str:
    items = [py_float(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n" + "".join(f"{indent}    {line},\n" for line in lines) + f"{indent}]"


def _py_module(model: ExportModel, name: str, fmt: str, layers_src: str, body: str) -> str:
    import pprint

    dep = "numpy only" if fmt == "python" else "no dependency (plain lists and math)"
    usage = ("p = {n}.predict_proba(X)   # X: (n, {k}) raw inputs -> (n,) float64"
             if fmt == "python" else
             "p = {n}.predict_proba([x1, x2])   # list of rows -> list of floats")
    rows = [c.row for c in model.inputs]
    imports = "import math\n\nimport numpy as np\n" if fmt == "python" else "import math\n"
    dtype = f"DTYPE = np.{np.dtype(model.dtype).name}\n" if fmt == "python" else ""
    return f'''"""{name}: purchase-propensity predictor generated by nn_core.export (format {fmt}).

One self-contained file, {dep}; weights embedded. Predicts {model.target} from the
raw inputs of one session, in this order:

{table_comment(model, "    ")}

{_network_line(model, "float64" if fmt == "python-pure" else model.dtype)}

Usage::

    import {name}
    p = {name}.predict(x)                 # one row: list of {len(model.inputs)} numbers -> float
    {usage.format(n=name, k=len(model.inputs))}
    x = {name}.encode({{"Month": "Feb", ...}})  # CSV-like record -> raw input row
"""

{imports}
ACTIVATION = {model.activation!r}
OUTPUT = {model.output!r}
LEAKY_SLOPE = {py_float(model.leaky_slope)}
N_INPUTS = {len(model.inputs)}
N_FEATURES = {model.params[0][0].shape[0]}
{dtype}
INPUTS = {pprint.pformat(input_table(model), width=96, sort_dicts=False)}
_ROWS = {rows!r}  # first feature (weight row) of each input

{layers_src}{_PY_CANONICAL}{body}'''


def generate_python(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """One-file numpy predictor ``NAME.py`` (model dtype, unfolded, like predict.py)."""
    parts = ["LAYERS = []  # (W (fan_in, fan_out), b (fan_out,)) per layer\n"]
    for W, b in model.params:
        parts.append(f"LAYERS.append((\n    np.array({_py_list(W.ravel(), indent='    ')},"
                     f" dtype=DTYPE).reshape({W.shape[0]}, {W.shape[1]}),\n"
                     f"    np.array({_py_list(b, indent='    ')}, dtype=DTYPE),\n))\n")
    source = _py_module(model, name, "python", "".join(parts), _PY_NUMPY_BODY)
    width = max(W.shape[1] for W, _ in model.params)
    return {f"{name}.py": source}, {"weight_bytes": sum(W.nbytes + b.nbytes
                                                         for W, b in model.params),
                                    "ram_bytes": 2 * width * np.dtype(model.dtype).itemsize}


def generate_python_pure(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """One-file dependency-free predictor ``NAME.py`` (double precision lists)."""
    parts = ["LAYERS = []  # layer 0: W[row] = weight row; later layers: W[j] = column j\n"]
    for layer, (W, b) in enumerate(model.params):
        M = W if layer == 0 else W.T
        rows = ",\n".join(f"        {_py_list(r, indent='        ')}" for r in M)
        parts.append(f"LAYERS.append((\n    [\n{rows},\n    ],\n"
                     f"    {_py_list(b, indent='    ')},\n))\n")
    source = _py_module(model, name, "python-pure", "".join(parts), _PY_PURE_BODY)
    width = max(W.shape[1] for W, _ in model.params)
    return {f"{name}.py": source}, {"weight_bytes": 8 * model.n_parameters,
                                    "ram_bytes": 2 * width * 8}


# --------------------------------------------------------------------------- size report


def arm_sizes(c_files: dict[str, str], name: str) -> dict | None:
    """``.text/.data/.bss`` of ``NAME.c`` built by ``arm-none-eabi-gcc`` (None if absent).

    Berkeley ``size`` counts read-only data (the weight arrays) in ``.text``.
    """
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if gcc is None or size is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for fname, text in c_files.items():
            (Path(tmp) / fname).write_text(text)
        obj = Path(tmp) / f"{name}.o"
        build = subprocess.run([gcc, *ARM_FLAGS, "-c", str(Path(tmp) / f"{name}.c"),
                                "-o", str(obj)], capture_output=True, text=True)
        if build.returncode != 0:
            raise ExportError(f"arm-none-eabi-gcc failed on {name}.c:\n{build.stderr}")
        out = subprocess.run([size, str(obj)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    return {"flags": " ".join(ARM_FLAGS), "text": text, "data": data, "bss": bss}


def format_report(report: dict) -> str:
    """Human-readable lines of the size (and accuracy) report."""
    lines = [f"format {report['format']}: {', '.join(report['files'])}",
             f"  parameters:       {report['parameters']}",
             f"  weight bytes:     {report['weight_bytes']}"]
    if "float32_weight_bytes" in report:
        ratio = report["weight_bytes"] / report["float32_weight_bytes"]
        lines.append(f"  float32 weights:  {report['float32_weight_bytes']} bytes "
                     f"(int8 is {ratio:.1%} of it)")
    where = "stack" if report["format"].startswith("c") else "working rows"
    lines.append(f"  RAM for buffers:  {report['ram_bytes']} bytes ({where})")
    arm = report.get("arm_cortex_m4")
    if arm:
        lines.append(f"  cortex-m4 object: .text {arm['text']}  .data {arm['data']}  "
                     f".bss {arm['bss']}  ({arm['flags']})")
    elif report["format"].startswith("c"):
        lines.append("  cortex-m4 object: arm-none-eabi-gcc not installed, not measured")
    if "accuracy" in report:
        acc = report["accuracy"]
        line = f"  ROC-AUC on {acc['rows']} rows of {acc['csv']}: float32 {acc['float32']:.5f}"
        if "int8" in acc:
            line += f", int8 {acc['int8']:.5f} (difference {acc['int8'] - acc['float32']:+.5f})"
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- export + CLI

GENERATORS = {
    "c": generate_c,
    "c-int8": generate_c_int8,
    "python": generate_python,
    "python-pure": generate_python_pure,
}


def export(model: ExportModel, fmt: str, name: str) -> tuple[dict[str, str], dict]:
    """Generate every output file of one format in memory.

    Returns
    -------
    files : dict file name -> text (including ``NAME.json``)
    report : dict, the size report (also stored in ``NAME.json``)
    """
    check_name(name)
    files, sizes = GENERATORS[fmt](model, name)
    report = {
        "format": fmt,
        "files": sorted([*files, f"{name}.json"]),
        "parameters": model.n_parameters,
        "weight_bytes": int(sizes["weight_bytes"]),
        "ram_bytes": int(sizes["ram_bytes"]),
    }
    if "float32_weight_bytes" in sizes:
        report["float32_weight_bytes"] = int(sizes["float32_weight_bytes"])
    if fmt.startswith("c"):
        report["arm_cortex_m4"] = arm_sizes(files, name)
    entry = {"c": f"float {name}_predict(const float *x)",
             "c-int8": f"float {name}_predict(const float *x)",
             "python": f"{name}.predict(x) / {name}.predict_proba(X)",
             "python-pure": f"{name}.predict(x) / {name}.predict_proba(rows)"}[fmt]
    doc = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "name": name,
        "target_format": fmt,
        "entry_point": entry,
        "returns": (f"probability that {model.target} is TRUE" if model.output == "sigmoid"
                    else f"predicted {model.target}"),
        "invalid_numeric": INVALID_RULE,
        "network": {"features": int(model.params[0][0].shape[0]),
                    "layers": model.widths, "activation": model.activation,
                    "output": model.output},
        "inputs": input_table(model),
        "size": report,
    }
    if fmt == "c-int8":
        doc["quantisation"] = (
            "weights: symmetric int8 per output channel, s_j = max_i |W_ij| / 127; "
            "activations: symmetric int8 with a dynamic per-row scale t = max|a| / 127 before "
            "every layer (layer 0: the standardised numeric features; one-hot inputs are exact); "
            "int32 accumulation, float32 scales and biases; rounding half away from zero")
    files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
    return files, report


def check_name(name: str) -> None:
    """NAME must be a C identifier and a Python module name."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name) or keyword.iskeyword(name):
        raise ExportError(f"--name {name!r}: use letters, digits and '_' (not starting with a "
                          "digit), so that it is a valid C identifier and Python module name")


def write_all(out_dir: Path, files: dict[str, str]) -> None:
    """Write every file or none: stage them all in a temporary folder, then rename each.

    Renames within one file system are atomic, so each file is complete; a failure while
    staging leaves ``out_dir`` as it was (a folder created here is removed again).
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for fname, text in files.items():
            (stage / fname).write_text(text, encoding="utf-8")
        for fname in files:
            (stage / fname).replace(out_dir / fname)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    stage.rmdir()


def evaluate_csv(model: ExportModel, mlp, path: Path, fmt: str) -> dict:
    """ROC-AUC of the float32 network (and of the int8 scheme for c-int8) on a labelled CSV."""
    import pandas as pd

    from nn_core.metrics import roc_auc

    if not path.is_file():
        raise ExportError(f"{path}: file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c.name for c in model.inputs if c.name not in df.columns]
    if model.target not in df.columns:
        missing.append(model.target)
    if missing:
        raise ExportError(f"{path}: missing column(s) {missing}")
    for c in model.numeric:
        values = pd.to_numeric(df[c.name], errors="coerce")
        if values.isna().any():
            i = int(np.flatnonzero(values.isna())[0])
            raise ExportError(f"{path}: row {i + 1}, column {c.name!r}: not a number "
                              f"({df[c.name].iloc[i]!r})")
        df[c.name] = values
    labels = df[model.target].str.strip().str.upper().map({"TRUE": 1, "1": 1, "FALSE": 0,
                                                          "0": 0})
    if labels.isna().any():
        i = int(np.flatnonzero(labels.isna())[0])
        raise ExportError(f"{path}: row {i + 1}, column {model.target!r}: not TRUE/FALSE/1/0")
    X = encode_table(model, df)
    F = features_from_codes(model, X)
    valid = ~np.isnan(F).any(axis=1)
    y = labels.to_numpy(dtype=np.int64)[valid]
    result = {"csv": str(path), "rows": int(valid.sum()),
              "float32": roc_auc(y, mlp.predict_proba(F[valid]))}
    if fmt == "c-int8":
        result["int8"] = roc_auc(y, predict_int8(model, X[valid]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nn_core.export",
        description="Export a model directory (model.json, weights.npz, preprocess.json) to a "
                    "C (float32 or int8) or single-file Python predictor of raw inputs.")
    parser.add_argument("model_dir", type=Path, help="directory written by train.py")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--name", help="base name of the files and C symbols "
                        "(default: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NAMES.items())
                        + ")")
    parser.add_argument("--eval-csv", type=Path, help="labelled CSV (e.g. the test split): "
                        "also report ROC-AUC of float32 and, for c-int8, of int8")
    args = parser.parse_args(argv)
    name = args.name or DEFAULT_NAMES[args.fmt]
    try:
        check_name(name)
        model, mlp = load_model_dir(args.model_dir)
        files, report = export(model, args.fmt, name)
        if args.eval_csv is not None:
            report["accuracy"] = evaluate_csv(model, mlp, args.eval_csv, args.fmt)
            doc = json.loads(files[f"{name}.json"])
            doc["size"] = report
            files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
        write_all(args.out, files)
    except (ValueError, OSError) as e:  # ModelFileError and ExportError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
