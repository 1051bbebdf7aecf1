"""The fitted input transform, held as data: raw columns -> the network's feature matrix.

A :class:`Preprocessing` is what ``preprocess.json`` stores: for each raw input column,
in feature order,

- numeric: ``z = (u - mean) / std`` with ``u = log1p(x)`` where ``log1p`` is set, else
  ``u = x``: one feature;
- categorical: the training categories ``c_0 < ... < c_{K-1}`` (canonical texts, see
  :func:`canonical_text`): a one-hot block of ``K + 1`` features whose last position is
  the *unseen* bucket.

A column may also carry ``impute`` (``train.py --on-invalid impute``): ``{"value": v,
"indicator": b}``. A *missing* input (NaN in ``U``: an empty cell or one of
:data:`MISSING_TOKENS`) is replaced by ``v`` (the training median of ``x``, or the most
frequent training category), and where ``b`` is true (the column had missing values in the
training rows) the block gains one more feature, last: the missing indicator, 1 for an
imputed row and 0 otherwise. A preprocess.json with any ``impute`` entry is written as
format version 2 (version 1 readers refuse it rather than score it wrongly); one without is
version 1, as before.

A numeric column may also carry ``encoding`` (``train.py --numeric-encoding ple``):
``{"kind": "piecewise_linear", "edges": [b_0, ..., b_T], "value": v}``, the piecewise-linear
encoding of Gorishniy, Rubachev and Babenko (2022) with bin edges ``b_0 < ... < b_T``
fitted on the training rows (quantiles of ``x``, or the cuts of a tree of the labels;
docs/math.md, "Piecewise-linear encoding of numeric inputs"). The block is then
``[z, e_1(x), ..., e_T(x)]`` where ``v`` is true and ``[e_1(x), ..., e_T(x)]`` where it is
false (:func:`piecewise_linear`), before the missing indicator. A preprocess.json with
any ``encoding`` is format version 3.

An ``encoding`` may instead, or as well, hold the *Gaussian rank* of ``x``
(``--numeric-encoding quantile``, ``quantile+ple``, ``standard+quantile``,
``standard+quantile+ple``): ``"knots": [q_1, ..., q_m], "scores": [s_1, ..., s_m]``, the
training quantiles of ``x`` (equal ones merged) and their normal scores, and ``"ends":
[lo, hi]``; ``g(x)`` is ``lo`` at or below ``q_1``, ``hi`` at or above ``q_m`` and the linear
interpolation of the scores between the knots (:func:`gaussian_rank`; docs/math.md,
"Gaussian-rank encoding of numeric inputs"). The
``kind`` names the parts, in block order: ``"piecewise_linear"``, ``"gaussian_rank"`` or
``"gaussian_rank+piecewise_linear"``; the block is ``[z if value] + [g(x) if knots] +
[e_1(x), ..., e_T(x) if edges]`` (:func:`block_parts`, the layout written once). A
preprocess.json with any Gaussian-rank encoding is format version 4 (version 3 readers
refuse it rather than score it wrongly).

A numeric column may also carry ``range``: ``[low, high]``, the inclusive bounds its
values were held to in training (the schema's: ``features/tabular.py: UCI_RANGES`` or a
role file's ``ranges``; ``null`` for an open side). :meth:`Preprocessing.inputs` refuses a
value outside them, with the words the table reader uses (:func:`below_minimum`,
:func:`above_maximum`). A ``Preprocessor`` given the ranges (train.py gives its
schema's) records one on every numeric column; a file without any (written before ranges
were stored) has none, and :attr:`Preprocessing.column_ranges` is then None. The ranges
change no feature, so they need no new format version: an older reader ignores them and
computes the same features.

The arithmetic is written once, in :func:`features_from_inputs`, over a matrix of raw
inputs ``U`` (numeric values, and for each categorical column the position ``k`` of its
category in the block, ``K`` for unseen). :meth:`Preprocessing.transform` (tables, with
errors that name row and column) and the exporter's reference model of an exported
predictor (category *codes*, invalid rows as NaN) both go through it.

Fitting (choosing log1p, means, standard deviations and categories from training rows)
lives with the data code, in ``features/tabular.py: Preprocessor``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from .io import ModelFileError

PREPROCESS_FORMAT = "purchase-propensity-preprocess"
PREPROCESS_FORMAT_VERSION = 1
#: The format version of a preprocess.json with imputation (``impute`` entries).
PREPROCESS_IMPUTE_VERSION = 2
#: The format version of a preprocess.json with a numeric encoding (``encoding`` entries;
#: it may have ``impute`` entries too).
PREPROCESS_ENCODING_VERSION = 3
#: The format version of a preprocess.json with a Gaussian-rank encoding (``knots``,
#: ``scores`` and ``ends`` in an ``encoding``; it may have every other entry too).
PREPROCESS_RANK_VERSION = 4


class NumericEncoding(NamedTuple):
    """The parts of a numeric column's block, in block order: the standardised value
    ``z``, the Gaussian rank ``g(x)``, the piecewise-linear encoding ``e(x)``."""

    value: bool
    rank: bool
    ple: bool


#: The numeric encodings ``train.py --numeric-encoding`` offers, by name: the standardised
#: value alone, the piecewise-linear encoding (``ple``) and the Gaussian rank
#: (``quantile``), each instead of the value or beside it (the value first, then the rank,
#: then the bins).
NUMERIC_ENCODINGS = {
    "standard": NumericEncoding(value=True, rank=False, ple=False),
    "ple": NumericEncoding(value=False, rank=False, ple=True),
    "standard+ple": NumericEncoding(value=True, rank=False, ple=True),
    "quantile": NumericEncoding(value=False, rank=True, ple=False),
    "quantile+ple": NumericEncoding(value=False, rank=True, ple=True),
    "standard+quantile": NumericEncoding(value=True, rank=True, ple=False),
    "standard+quantile+ple": NumericEncoding(value=True, rank=True, ple=True),
}
#: Most quantile bins of one piecewise-linear encoding (``--ple-bins``).
MAX_PLE_BINS = 256
#: Knots of a Gaussian-rank encoding before equal ones merge (``--rank-knots``), and the
#: bounds on it (also the most a preprocess.json may store).
DEFAULT_RANK_KNOTS = 1000
MIN_RANK_KNOTS = 2
MAX_RANK_KNOTS = 4096
#: The Gaussian rank's scores are ``Phi^-1(r)`` with ``r`` clipped to this distance from 0
#: and 1: ``|s| <= Phi^-1(1 - 1e-7)``, about 5.2.
RANK_CLIP = 1e-7
#: The ``kind`` of an ``encoding`` by its parts (rank, piecewise-linear).
ENCODING_KINDS = {
    (False, True): "piecewise_linear",
    (True, False): "gaussian_rank",
    (True, True): "gaussian_rank+piecewise_linear",
}
#: How the bins of a piecewise-linear encoding are chosen (``--ple-binning``): quantiles of
#: the training values, or the cuts of a regression tree of the training labels.
PLE_BINNINGS = ("quantile", "tree")

#: Cell texts that mean "no value" (compared case-insensitively, after stripping blanks).
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null"})
#: A target cell's text, stripped and in capitals, and its label: every reader of a
#: labelled table (``features/tabular.py`` and the exporter's ``--eval-csv``) takes these.
TARGET_LABELS = {"TRUE": 1, "1": 1, "FALSE": 0, "0": 0}

#: The reason for a missing cell (empty, or a :data:`MISSING_TOKENS` text) where none may
#: be: the words of every reader of a table (``features/tabular.py`` and
#: :meth:`Preprocessing.inputs`).
MISSING = "missing value"


def below_minimum(low: float) -> str:
    """The reason for a value below its column's allowed minimum ``low`` (every reader's
    words)."""
    return f"value below the allowed minimum {low:g}"


def above_maximum(high: float) -> str:
    """The reason for a value above its column's allowed maximum ``high`` (every reader's
    words)."""
    return f"value above the allowed maximum {high:g}"


#: What ``--on-invalid`` may say about a bad cell of a table: stop with an error, leave its
#: row out, or impute a missing cell (docs/architecture.md, "Invalid cells").
ON_INVALID = ("error", "skip", "impute")

_INT_TEXT = re.compile(r"^[+-]?\d+$")


def canonical_text(value: str) -> str:
    """Canonical text of a categorical cell (the form ``preprocess.json`` stores).

    The text is stripped; integer-valued numbers lose their decimals (``"3.0"`` -> ``"3"``,
    ``"007"`` -> ``"7"``); booleans become ``"TRUE"``/``"FALSE"``; anything else is kept.
    """
    text = value.strip()
    upper = text.upper()
    if upper in ("TRUE", "FALSE"):
        return upper
    if _INT_TEXT.match(text):
        return str(int(text))  # Python int: exact even for 19-digit ids
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return text


def canonical_series(values: pd.Series) -> pd.Series:
    """``canonical_text`` applied to a column of strings (computed once per distinct value)."""
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    texts = np.array([canonical_text(str(v)) for v in distinct], dtype=object)
    return pd.Series(texts[codes], index=values.index, name=values.name)


def category_positions(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """The position ``k`` of each cell's category in ``categories`` (``K`` when unseen).

    Cells are compared as canonical text (a cell ``v`` as ``canonical_text(str(v))``),
    computed once per distinct cell: a column of a million rows with a dozen distinct
    values costs one hash pass (nothing at all for a ``pd.Categorical``).

    Returns
    -------
    ndarray of intp, shape (n,)
    """
    return category_cells(values, categories)[0]


def category_cells(values: pd.Series, categories: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`category_positions` and :func:`missing_mask` of a column from one scan of
    its distinct cells.

    Returns
    -------
    positions : ndarray of intp, shape (n,)
        ``k`` in ``0..K`` (``K``: unseen).
    missing : ndarray of bool, shape (n,)
        Which cells hold no value (NaN/None or a :data:`MISSING_TOKENS` text).
    """
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    if not len(distinct):
        return np.zeros(len(values), dtype=np.intp), np.zeros(len(values), dtype=bool)
    index = {c: k for k, c in enumerate(categories)}
    unseen = len(index)
    positions = np.array([index.get(canonical_text(str(v)), unseen) for v in distinct],
                         dtype=np.intp)
    missing = np.array([_is_missing(v) for v in distinct], dtype=bool)
    return positions[codes], missing[codes]


#: The parts of a column's feature block, in block order (:func:`block_parts`): a numeric
#: column's standardised value ``z``, Gaussian rank ``g(x)`` and piecewise-linear bins
#: ``e_1(x), ..., e_T(x)``, a categorical column's one-hot block, then either's missing
#: indicator.
BLOCK_PARTS = ("value", "rank", "ple", "onehot", "missing")


def block_parts(column: Mapping) -> list[tuple[str, int]]:
    """The parts of one column's feature block with their widths, in block order: the
    block's layout, written once.

    A numeric column's block is ``[z if the value is kept] + [g(x) if a Gaussian rank] +
    [e_1(x), ..., e_T(x) if piecewise-linear bins]``, a categorical column's the one-hot
    block of ``K + 1`` features; either ends with the missing indicator where the column
    has one.

    Parameters
    ----------
    column : dict
        A checked column (:attr:`Preprocessing.columns`).

    Returns
    -------
    list of (str, int)
        ``(part, width)`` with ``part`` in :data:`BLOCK_PARTS`: ``("value", 1)`` (always
        without an encoding), ``("rank", 1)``, ``("ple", T)``, or ``("onehot", K + 1)``;
        then ``("missing", 1)``. The widths sum to :func:`block_width`.
    """
    if column["kind"] == "numeric":
        encoding = column.get("encoding") or {}
        parts = [("value", 1)] if encoding.get("value", True) else []
        if "knots" in encoding:
            parts.append(("rank", 1))
        if "edges" in encoding:
            parts.append(("ple", n_bins(encoding)))
    else:
        parts = [("onehot", len(column["categories"]) + 1)]
    if has_indicator(column):
        parts.append(("missing", 1))
    return parts


def part_slices(column: Mapping, start: int = 0) -> dict[str, slice]:
    """The features of each part of one column's block (:func:`block_parts`), in block
    order, for a block that starts at feature ``start``: ``{"value": slice(start, start +
    1), "ple": slice(start + 1, start + 1 + T), ...}``."""
    slices = {}
    for part, width in block_parts(column):
        slices[part] = slice(start, start + width)
        start += width
    return slices


def block_width(column: Mapping) -> int:
    """Features of one column: the sum of its parts' widths (:func:`block_parts`)."""
    return sum(width for _, width in block_parts(column))


def n_bins(encoding: Mapping) -> int:
    """Number ``T`` of piecewise-linear features of a numeric column's ``encoding`` (0
    without ``edges``)."""
    return len(encoding["edges"]) - 1 if "edges" in encoding else 0


def gaussian_rank(x: np.ndarray, knots: Sequence[float], scores: Sequence[float],
                  ends: Sequence[float]) -> np.ndarray:
    """Gaussian-rank encoding ``g(x)``: the end values at and beyond the outer knots, the
    scores interpolated linearly between them.

    With knots ``q_1 < ... < q_m``, scores ``s_1 <= ... <= s_m`` and ends ``(lo, hi)``,
    ``g(x) = lo`` for ``x <= q_1``, ``hi`` for ``x >= q_m``, and
    ``g(x) = s_j + (x - q_j) (s_{j+1} - s_j) / (q_{j+1} - q_j)`` for ``q_j <= x <= q_{j+1}``
    in between (one knot: ``lo = hi = s_1``, a constant). Fitted
    (``features/tabular.py: gaussian_rank_knots``), ``s_j = Phi^-1(r_j)`` at the training
    quantile ``q_j = F_train^-1(r_j)`` and ``lo, hi = Phi^-1(RANK_CLIP),
    Phi^-1(1 - RANK_CLIP)``: ``g`` is ``Phi^-1(F_train(x))`` interpolated between the
    inner knots, with scikit-learn's ``QuantileTransformer`` rule at its ends (a value at
    the training minimum or maximum, or beyond, gets the clip bound; ``s_1`` and ``s_m``,
    the mid-ranks of their ties, then only anchor the outer segments; docs/math.md,
    "Gaussian-rank encoding of numeric inputs").

    Parameters
    ----------
    x : ndarray, shape (n,), float64
        NaN stays NaN.
    knots, scores : sequence of float, length m >= 1
    ends : sequence of float, length 2
        ``(lo, hi)``, ``lo <= s_1``, ``hi >= s_m``.

    Returns
    -------
    g : ndarray, shape (n,), float64
    """
    x = np.asarray(x, dtype=np.float64)
    q = np.asarray(knots, dtype=np.float64)
    g = np.interp(x, q, np.asarray(scores, dtype=np.float64))  # NaN stays NaN, m >= 2
    g = np.where(x <= q[0], ends[0], np.where(x >= q[-1], ends[1], g))
    if len(q) == 1:  # np.interp answers s_1 even for NaN there
        g[np.isnan(x)] = np.nan
    return g


def piecewise_linear(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Piecewise-linear encoding ``E`` of values ``x`` on bins ``[b_{t-1}, b_t)``.

    ``E[r, t-1] = e_t(x_r)`` for ``t = 1..T`` (Gorishniy et al. 2022, equation 1):
    ``e_t(x) = (x - b_{t-1}) / (b_t - b_{t-1})`` clipped to ``[0, 1]``, except that the
    first component is not clipped below (``x < b_0``) and the last is not clipped above
    (``x > b_T``), so that values outside the training range stay distinguishable; with a
    single bin (``T = 1``) the component is the unclipped ``(x - b_0) / (b_1 - b_0)``.
    Equivalently: 1 for ``x >= b_t`` (``t < T``), 0 for ``x < b_{t-1}`` (``t > 1``), the
    fraction of the bin covered otherwise.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
        NaN stays NaN in every component.
    edges : sequence of float, length T + 1, strictly increasing

    Returns
    -------
    E : ndarray, shape (n, T), float64
    """
    b = np.asarray(edges, dtype=np.float64)
    E = (np.asarray(x, dtype=np.float64)[:, None] - b[:-1]) / np.diff(b)
    if E.shape[1] > 1:
        E[:, :-1] = np.minimum(E[:, :-1], 1.0)  # NaN-preserving (np.minimum propagates NaN)
        E[:, 1:] = np.maximum(E[:, 1:], 0.0)
    return E


def piecewise_linear_grad(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Derivative ``dE/dx`` of :func:`piecewise_linear`: piecewise constant.

    ``de_t/dx = 1 / (b_t - b_{t-1})`` where component ``t`` is on its sloped piece
    (``b_{t-1} <= x < b_t``; below ``b_1`` for the first, from ``b_{T-1}`` on for the last)
    and 0 where it is clipped. At an edge the derivative is the one from the right (the
    encoding has a kink there; any value between the one-sided slopes is a subgradient).

    Returns
    -------
    ndarray, shape (n, T), float64
    """
    b = np.asarray(edges, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)[:, None]
    T = len(b) - 1
    no_lower = np.arange(T) == 0  # the first component slopes for every x < b_1
    no_upper = np.arange(T) == T - 1  # the last slopes for every x >= b_{T-1}
    sloped = ((x >= b[:-1]) | no_lower) & ((x < b[1:]) | no_upper)
    return np.where(sloped, 1.0 / np.diff(b), 0.0)


def has_indicator(column: Mapping) -> bool:
    """Whether the column's block ends with a missing-indicator feature."""
    impute = column.get("impute")
    return bool(impute and impute["indicator"])


def missing_mask(values: pd.Series) -> np.ndarray:
    """Which cells of a column hold no value: NaN/None, or a :data:`MISSING_TOKENS` text
    (computed once per distinct cell).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    missing = np.array([_is_missing(v) for v in distinct], dtype=bool)
    return (codes < 0) | (missing[codes] if len(missing) else False)


def cell_text(value: object) -> str:
    """A cell as the messages quote it: text as it is, a number of a typed frame as Python
    writes it (``np.float64(30.5)``: ``'30.5'``, ``np.float32(1.1)``: ``'1.1'``,
    ``np.int64(30)``: ``'30'``), anything else by ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, np.floating):
        return str(value)  # NumPy's shortest digits for its own dtype: float32 1.1 is '1.1'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _is_missing(value: object) -> bool:
    """Whether one distinct cell holds no value: NaN/None, or a :data:`MISSING_TOKENS` text."""
    if not isinstance(value, str) and pd.isna(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


def features_from_inputs(
    columns: Sequence[Mapping], U: np.ndarray, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix ``F`` of raw inputs ``U``: the transform, written once.

    Parameters
    ----------
    columns : list of dict
        The fitted columns (:attr:`Preprocessing.columns`).
    U : ndarray, shape (n, n_columns), float64
        Column ``i`` holds column ``i``'s raw values (numeric) or the position ``k`` in
        ``0..K`` of each row's category in its block (categorical; ``K`` = unseen).
    dtype : numpy dtype
        Of ``F``. The arithmetic is float64 whatever it is; float32 rounds its result once
        (the same numbers as ``F.astype(float32)``, without the float64 matrix).

    Returns
    -------
    F : ndarray, shape (n, n_features), ``dtype``
    invalid : ndarray, shape (n,), bool
        Rows with a numeric value that is NaN, infinite, or negative under ``log1p``; their
        numeric features are not meaningful (callers raise or return NaN for them). In a
        column with ``impute``, NaN means *missing*: it is replaced by the imputed value
        (numeric ``x`` or category position) before anything else, sets the column's
        missing indicator, and does not make the row invalid.
    """
    if any("impute" in c for c in columns):
        U, indicators = _impute(columns, U)
    else:
        indicators = None
    n = U.shape[0]
    blocks, n_features = [], 0  # the features of each part of each column's block
    for c in columns:
        blocks.append(part_slices(c, n_features))
        n_features = next(reversed(blocks[-1].values())).stop  # the last part ends the block
    F = np.zeros((n, n_features), dtype=dtype)
    numeric = [i for i, c in enumerate(columns) if c["kind"] == "numeric"]
    categorical = [i for i, c in enumerate(columns) if c["kind"] == "categorical"]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # numeric columns, all at once: z = (u - mean) / std, u = log1p(x) where chosen (a
        # feature beyond the dtype's range becomes inf, which the callers refuse by row)
        x = U[:, numeric]
        log = np.array([columns[i]["log1p"] for i in numeric], dtype=bool)
        mean = np.array([columns[i]["mean"] for i in numeric], dtype=np.float64)
        std = np.array([columns[i]["std"] for i in numeric], dtype=np.float64)
        invalid = (~np.isfinite(x) | (log & (x < 0))).any(axis=1)
        u = x.copy(order="K")  # keep the inputs' layout: a column-major chunk stays so
        u[:, log] = np.log1p(np.maximum(x[:, log], 0.0))  # NaN stays NaN (invalid rows)
        u -= mean
        u /= std
        # the standardised value z, where the block keeps it (an encoding may replace it)
        keep = [j for j, i in enumerate(numeric) if "value" in blocks[i]]
        F[:, [blocks[numeric[j]]["value"].start for j in keep]] = u[:, keep]
        for j, i in enumerate(numeric):  # encodings of x: the Gaussian rank, the bins
            encoding, parts = columns[i].get("encoding"), blocks[i]
            if "rank" in parts:
                F[:, parts["rank"].start] = gaussian_rank(x[:, j], encoding["knots"],
                                                          encoding["scores"], encoding["ends"])
            if "ple" in parts:
                F[:, parts["ple"]] = piecewise_linear(x[:, j], encoding["edges"])
        # categorical columns, all at once: one-hot F[r, first + k] = 1 for the position k
        # of row r's category (K = unseen); a NaN or impossible code sets nothing
        k = U[:, categorical]
        K = np.array([len(columns[i]["categories"]) for i in categorical], dtype=np.float64)
        first = np.array([blocks[i]["onehot"].start for i in categorical], dtype=np.int64)
        valid = (k >= 0) & (k <= K) & (k == np.floor(k))
        flat = np.arange(n)[:, None] * F.shape[1] + first + np.where(valid, k, 0)
        F.reshape(-1)[flat[valid].astype(np.intp)] = 1
    if indicators:
        for i, missing in indicators.items():
            F[:, blocks[i]["missing"].start] = missing
    return F, invalid


def _impute(columns: Sequence[Mapping], U: np.ndarray) -> tuple[np.ndarray, dict]:
    """``U`` with the NaN (missing) inputs of the imputing columns replaced, and the missing
    mask of each column that has an indicator (``{column index: (n,) bool}``)."""
    U = U.copy(order="A")  # keeps a Fortran-ordered U's columns contiguous
    indicators = {}
    for i, c in enumerate(columns):
        impute = c.get("impute")
        if impute is None:
            continue
        missing = np.isnan(U[:, i])
        if c["kind"] == "numeric":
            U[missing, i] = impute["value"]
        else:
            U[missing, i] = c["categories"].index(impute["value"])
        if impute["indicator"]:
            indicators[i] = missing
    return U, indicators


class Preprocessing:
    """A fitted map from a raw table to the network's feature matrix (``preprocess.json``).

    Parameters
    ----------
    columns : list of dict, optional
        The fitted columns in feature order (format in the module docstring); ``None``
        until fitted (``features/tabular.py: Preprocessor.fit``).
    target, id_column : str or None
        Names of the target and row-id columns of the training data (not features).
    source : dict, optional
        Where the table came from, e.g. ``{"kind": "table"}`` (the default) or
        ``{"kind": "events", "format": "taobao", "horizon": "1d"}``.
    """

    def __init__(
        self,
        columns: list[dict] | None = None,
        target: str | None = None,
        id_column: str | None = None,
        source: Mapping | None = None,
    ) -> None:
        self.columns = columns
        self.target = target
        self.id_column = id_column
        self.source = dict(source) if source is not None else {"kind": "table"}

    @property
    def fitted(self) -> bool:
        return self.columns is not None

    def _check_fitted(self) -> list[dict]:
        if self.columns is None:
            raise ValueError("the Preprocessor is not fitted yet (call fit or load)")
        return self.columns

    @property
    def n_features(self) -> int:
        """Width of the feature matrix: the sum of the blocks (:func:`block_width`)."""
        return sum(block_width(c) for c in self._check_fitted())

    @property
    def feature_names(self) -> list[str]:
        """One name per feature column, e.g. ``log1p(PageValues)``, ``PageValues[rank]``,
        ``PageValues[ple 2]``, ``Month=Nov``."""
        names = []
        for c in self._check_fitted():
            name = c["name"]
            for part, width in block_parts(c):
                if part == "value":
                    names.append(f"log1p({name})" if c["log1p"] else name)
                elif part == "rank":
                    names.append(f"{name}[rank]")
                elif part == "ple":
                    names.extend(f"{name}[ple {t}]" for t in range(1, width + 1))
                elif part == "onehot":
                    names.extend([*(f"{name}={k}" for k in c["categories"]),
                                  f"{name}=<unseen>"])
                else:
                    names.append(f"missing({name})")
        return names

    def column_slices(self) -> dict[str, slice]:
        """For each raw input column, the slice of the feature matrix its block fills (the
        numeric value, its Gaussian rank and its piecewise-linear bins, or the one-hot
        block, then the missing indicator), in feature order."""
        slices, start = {}, 0
        for c in self._check_fitted():
            width = block_width(c)
            slices[c["name"]] = slice(start, start + width)
            start += width
        return slices

    @property
    def encodes(self) -> bool:
        """Whether a numeric column has an encoding (``--numeric-encoding`` other than
        ``standard``)."""
        return any("encoding" in c for c in self._check_fitted())

    @property
    def ranks(self) -> bool:
        """Whether a numeric column has a Gaussian-rank encoding (``quantile``)."""
        return any("knots" in c.get("encoding", {}) for c in self._check_fitted())

    @property
    def column_ranges(self) -> dict[str, tuple[float | None, float | None]] | None:
        """The allowed range ``(low, high)`` of each numeric column that stores one
        (``None``: an open side); None where no column stores one (a preprocess.json
        written before ranges were stored)."""
        ranges = {c["name"]: tuple(c["range"]) for c in self._check_fitted() if "range" in c}
        return ranges or None

    @property
    def imputes(self) -> bool:
        """Whether missing inputs are imputed (fitted with ``--on-invalid impute``)."""
        return any("impute" in c for c in self._check_fitted())

    @property
    def input_columns(self) -> list[str]:
        """Raw columns the transform needs, in feature order."""
        return [c["name"] for c in self._check_fitted()]

    def _require(self, df: pd.DataFrame, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise ValueError(f"column {missing[0]!r} is missing (needed: {missing})")

    @staticmethod
    def _numeric_values(df: pd.DataFrame, name: str, first_row: int,
                        missing_ok: bool = False) -> np.ndarray:
        """The column as float64; a value that is not a finite number raises, but with
        ``missing_ok`` a missing cell (:func:`missing_mask`) is NaN."""
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if missing_ok and bad.any():
            missing = missing_mask(df[name])
            bad &= ~missing
            values = np.where(missing, np.nan, values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"row {first_row + i}, column {name!r}: not a finite number "
                f"(value: {cell_text(df[name].iloc[i])!r})"
            )
        return values

    def inputs(self, df: pd.DataFrame, first_row: int = 1) -> np.ndarray:
        """The raw-input matrix ``U`` of :func:`features_from_inputs` for a table.

        Numeric cells are parsed and checked (finite, ``>= 0`` in log1p columns, within the
        column's ``range``); categorical cells are compared as canonical text with the
        training categories. In a column with ``impute``, a missing cell
        (:func:`missing_mask`) is NaN, which :func:`features_from_inputs` imputes; in a
        categorical column without it, a missing cell is an error (as in the table reader),
        not an unseen category.

        Raises
        ------
        ValueError
            Naming row and column of a missing, non-finite, out-of-range or (log1p column)
            negative value.
        """
        columns = self._check_fitted()
        self._require(df, self.input_columns)
        U = np.empty((len(df), len(columns)), dtype=np.float64, order="F")  # columns contiguous
        for i, c in enumerate(columns):
            impute = "impute" in c
            if c["kind"] == "numeric":
                x = self._numeric_values(df, c["name"], first_row, missing_ok=impute)
                self._check_range(df, c, x, first_row)  # the table reader's words first
                if c["log1p"]:
                    negative = x < 0
                    if negative.any():
                        k = int(np.flatnonzero(negative)[0])
                        raise FeatureValueError(  # "row r, column 'x': negative value ..."
                            first_row + k, c["name"], None, f"negative value {x[k]:g} in a "
                            "log1p column (all training values were >= 0)")
                U[:, i] = x
            else:
                U[:, i], missing = category_cells(df[c["name"]], c["categories"])  # unseen: K
                if impute:
                    U[missing, i] = np.nan
                elif missing.any():
                    k = int(np.flatnonzero(missing)[0])
                    raise ValueError(f"row {first_row + k}, column {c['name']!r}: {MISSING} "
                                     f"(value: {cell_text(df[c['name']].iloc[k])!r})")
        return U

    @staticmethod
    def _check_range(df: pd.DataFrame, column: Mapping, x: np.ndarray, first_row: int
                     ) -> None:
        """Refuse the first value of ``x`` outside ``column``'s ``range`` (NaN, a missing
        value to impute, passes)."""
        low, high = column.get("range", (None, None))
        with np.errstate(invalid="ignore"):
            for bound, outside, reason in ((low, np.less, below_minimum),
                                           (high, np.greater, above_maximum)):
                if bound is not None and (bad := outside(x, bound)).any():
                    k = int(np.flatnonzero(bad)[0])
                    cell = cell_text(df[column["name"]].iloc[k])
                    raise ValueError(f"row {first_row + k}, column {column['name']!r}: "
                                     f"{reason(bound)} (value: {cell!r})")

    def transform(self, df: pd.DataFrame, first_row: int = 1, dtype=np.float64) -> np.ndarray:
        """Feature matrix of ``df``.

        Parameters
        ----------
        df : DataFrame
            Has every input column (any order, extra columns ignored). Numeric cells must
            be finite numbers (>= 0 in log1p columns); categorical cells any text.
        first_row : int
            Row number of ``df``'s first row, used in error messages (1-based data rows).
        dtype : numpy dtype
            Of the result: the network's (float32 needs no float64 copy first).

        Returns
        -------
        ndarray, shape (n_rows, n_features), ``dtype``

        Raises
        ------
        ValueError
            Naming row and column of a missing, non-finite or (log1p column) negative value.
        """
        return features_from_inputs(self._check_fitted(), self.inputs(df, first_row), dtype)[0]

    def unseen_counts(self, df: pd.DataFrame) -> dict[str, int]:
        """Number of rows per categorical column whose value was not seen in training."""
        counts = {}
        for c in self._check_fitted():
            if c["kind"] == "categorical":
                positions = category_positions(df[c["name"]], c["categories"])
                unseen = int(np.count_nonzero(positions == len(c["categories"])))
                if unseen:
                    counts[c["name"]] = unseen
        return counts

    def to_dict(self) -> dict:
        """The preprocess.json document (format_version 1; 2 with imputation; 3 with a
        piecewise-linear encoding; 4 with a Gaussian-rank encoding)."""
        version = (PREPROCESS_RANK_VERSION if self.ranks
                   else PREPROCESS_ENCODING_VERSION if self.encodes
                   else PREPROCESS_IMPUTE_VERSION if self.imputes
                   else PREPROCESS_FORMAT_VERSION)
        return {
            "format": PREPROCESS_FORMAT,
            "format_version": version,
            "target": self.target,
            "id_column": self.id_column,
            "source": self.source,
            "columns": self._check_fitted(),
        }

    @staticmethod
    def from_dict(doc: Mapping, path: str = "preprocess.json") -> Preprocessing:
        """Rebuild the fitted state from a preprocess.json document.

        Raises
        ------
        nn_core.io.ModelFileError
            Naming the file and the first malformed entry.
        """

        def bad(problem: str) -> ModelFileError:
            return ModelFileError(f"{path}: {problem}")

        if not isinstance(doc, Mapping) or doc.get("format") != PREPROCESS_FORMAT:
            raise bad(f"not a preprocessing state file (expected format {PREPROCESS_FORMAT!r})")
        version = doc.get("format_version")
        if isinstance(version, bool) or version not in (PREPROCESS_FORMAT_VERSION,
                                                        PREPROCESS_IMPUTE_VERSION,
                                                        PREPROCESS_ENCODING_VERSION,
                                                        PREPROCESS_RANK_VERSION):
            raise bad(f"unsupported format_version {doc.get('format_version')!r}")
        columns = doc.get("columns")
        if not isinstance(columns, list) or not columns:
            raise bad("'columns' must be a non-empty list")
        checked = []
        for i, c in enumerate(columns):
            if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
                raise bad(f"columns[{i}] must be an object with a 'name'")
            if c.get("kind") == "numeric":
                ok = (
                    isinstance(c.get("log1p"), bool)
                    and all(isinstance(c.get(k), int | float) and not isinstance(c.get(k), bool)
                            for k in ("mean", "std"))
                    and math.isfinite(c["mean"])
                    and math.isfinite(c["std"])
                    and c["std"] > 0
                )
                if not ok:
                    raise bad(f"columns[{i}] ({c['name']!r}): needs log1p (bool), mean, std > 0")
                checked.append(
                    {
                        "name": c["name"],
                        "kind": "numeric",
                        "log1p": c["log1p"],
                        "mean": float(c["mean"]),
                        "std": float(c["std"]),
                    }
                )
                if "range" in c:
                    checked[-1]["range"] = _checked_range(c["range"], bad(
                        f"columns[{i}] ({c['name']!r}): 'range' must be [low, high] (finite "
                        "numbers or null, low <= high)"))
            elif c.get("kind") == "categorical":
                if "range" in c:
                    raise bad(f"columns[{i}] ({c['name']!r}): 'range' in a categorical column")
                cats = c.get("categories")
                if not isinstance(cats, list) or not all(isinstance(k, str) for k in cats):
                    raise bad(f"columns[{i}] ({c['name']!r}): 'categories' must be strings")
                if len(set(cats)) != len(cats):
                    raise bad(f"columns[{i}] ({c['name']!r}): 'categories' lists a category "
                              "twice")
                checked.append({"name": c["name"], "kind": "categorical", "categories": cats})
            else:
                raise bad(f"columns[{i}]: kind must be 'numeric' or 'categorical'")
            if "encoding" in c:
                where = f"columns[{i}] ({c['name']!r}): 'encoding'"
                if version < PREPROCESS_ENCODING_VERSION:
                    raise bad(f"{where} needs format_version {PREPROCESS_ENCODING_VERSION} or "
                              f"{PREPROCESS_RANK_VERSION}")
                checked[-1]["encoding"] = encoding = _checked_encoding(c, bad(
                    f"{where} must be {{\"kind\": \"piecewise_linear\", \"gaussian_rank\" or "
                    '"gaussian_rank+piecewise_linear", "value": true or false, and the kind\'s '
                    '"edges" (at least 2 strictly increasing finite numbers) or "knots" and '
                    f'"scores" (1 to {MAX_RANK_KNOTS} finite numbers each, knots strictly '
                    'increasing, scores non-decreasing) and "ends" (2 finite numbers lo <= '
                    's_1, hi >= s_m; lo = hi = s_1 for one knot)} in a numeric column'))
                if "knots" in encoding and version < PREPROCESS_RANK_VERSION:
                    raise bad(f"{where} of kind {encoding['kind']!r} needs format_version "
                              f"{PREPROCESS_RANK_VERSION}")
            if "impute" in c:
                if version < PREPROCESS_IMPUTE_VERSION:
                    raise bad(f"columns[{i}] ({c['name']!r}): 'impute' needs format_version "
                              f"{PREPROCESS_IMPUTE_VERSION} or later")
                checked[-1]["impute"] = _checked_impute(c, bad(
                    f"columns[{i}] ({c['name']!r}): 'impute' must be {{\"value\": "
                    + ("a finite number (>= 0 in a log1p column)" if c["kind"] == "numeric"
                       else "one of the categories")
                    + ', "indicator": true or false}'))
        names = [c["name"] for c in checked]
        if len(set(names)) != len(names):
            raise bad(f"column {next(n for n in names if names.count(n) > 1)!r} is listed "
                      "twice")
        for key in ("target", "id_column"):
            if doc.get(key) is not None and not isinstance(doc.get(key), str):
                raise bad(f"{key!r} must be a column name or null, got {doc.get(key)!r}")
        if version == PREPROCESS_IMPUTE_VERSION and not any("impute" in c for c in checked):
            raise bad(f"format_version {version} but no column has 'impute'")
        if version == PREPROCESS_ENCODING_VERSION and not any("encoding" in c for c in checked):
            raise bad(f"format_version {version} but no column has 'encoding'")
        if version == PREPROCESS_RANK_VERSION and not any(
                "knots" in c.get("encoding", {}) for c in checked):
            raise bad(f"format_version {version} but no column has a Gaussian-rank 'encoding'")
        source = doc.get("source", {"kind": "table"})
        if not isinstance(source, Mapping):
            raise bad("'source' must be an object")
        return Preprocessing(checked, doc.get("target"), doc.get("id_column"), source)


def _finite_numbers(values, least: int, most: int) -> list[float] | None:
    """``values`` as floats if it is a list of ``least`` to ``most`` finite numbers (not
    booleans), else None."""
    if not isinstance(values, list) or not least <= len(values) <= most:
        return None
    try:  # an integer beyond float's range raises OverflowError in isfinite
        if not all(isinstance(v, int | float) and not isinstance(v, bool)
                   and math.isfinite(v) for v in values):
            return None
    except OverflowError:
        return None
    return [float(v) for v in values]


def _checked_range(bounds, error: ModelFileError) -> list[float | None]:
    """The ``range`` entry of a preprocess.json column, checked (``error`` if malformed)."""
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise error
    given = _finite_numbers([b for b in bounds if b is not None], 0, 2)
    if given is None or (len(given) == 2 and given[0] > given[1]):
        raise error
    return [None if b is None else float(b) for b in bounds]


def _checked_encoding(column: Mapping, error: ModelFileError) -> dict:
    """The ``encoding`` entry of a preprocess.json column, checked (``error`` if malformed)."""
    encoding = column["encoding"]
    if column.get("kind") != "numeric" or not isinstance(encoding, Mapping):
        raise error
    parts = next((p for p, kind in ENCODING_KINDS.items() if kind == encoding.get("kind")), None)
    if parts is None or not isinstance(encoding.get("value"), bool):
        raise error
    rank, ple = parts
    checked = {"kind": encoding["kind"], "value": encoding["value"]}
    if set(encoding) != {*checked, *(("knots", "scores", "ends") if rank else ()),
                         *(("edges",) if ple else ())}:
        raise error
    if rank:
        knots = _finite_numbers(encoding["knots"], 1, MAX_RANK_KNOTS)
        scores = _finite_numbers(encoding["scores"], 1, MAX_RANK_KNOTS)
        if knots is None or scores is None or len(knots) != len(scores) or not all(
                q0 < q1 and s0 <= s1 and math.isfinite((s1 - s0) / (q1 - q0))
                for (q0, q1), (s0, s1) in zip(itertools.pairwise(knots),
                                              itertools.pairwise(scores), strict=True)):
            raise error
        ends = _finite_numbers(encoding["ends"], 2, 2)
        if ends is None or not (ends[0] <= scores[0] and ends[1] >= scores[-1]) or (
                len(knots) == 1 and not ends[0] == ends[1] == scores[0]):
            raise error
        checked["knots"], checked["scores"], checked["ends"] = knots, scores, ends
    if ple:
        edges = _finite_numbers(encoding["edges"], 2, math.inf)
        if edges is None or not all(lo < hi and math.isfinite(hi - lo)
                                    for lo, hi in itertools.pairwise(edges)):
            raise error
        checked["edges"] = edges
    return checked


def _checked_impute(column: Mapping, error: ModelFileError) -> dict:
    """The ``impute`` entry of a preprocess.json column, checked (``error`` if malformed)."""
    impute = column["impute"]
    if not isinstance(impute, Mapping) or set(impute) != {"value", "indicator"} \
            or not isinstance(impute["indicator"], bool):
        raise error
    value = impute["value"]
    if column["kind"] == "numeric":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value) and not (column["log1p"] and value < 0))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str) and value in column["categories"]
    if not ok:
        raise error
    return {"value": value, "indicator": impute["indicator"]}


def check_finite_features(F: np.ndarray, columns, frame=None, first_row: int = 1,
                          dtype=np.float64) -> None:
    """Raise a ValueError naming the row and the *input column* of the first feature of ``F``
    that is not a finite number of ``dtype`` (e.g. a value so far from the training mean that
    its standardised feature overflows float32), rather than a feature index.

    Parameters
    ----------
    F : ndarray, shape (n, n_features)
        The features of ``frame`` (``Preprocessing.transform``).
    columns : list of dict
        The fitted columns (``Preprocessing.columns``): 1 feature per numeric column, ``K + 1``
        per categorical column of ``K`` categories, one more with a missing indicator.
    frame : DataFrame, optional
        The raw rows, to quote the value.
    first_row : int
        The row number of ``F``'s first row in messages.
    dtype : numpy dtype
        The network's dtype, which the features are cast to.
    """
    if F.size == 0:
        return
    limit = float(np.finfo(dtype).max)
    if F.max() <= limit and F.min() >= -limit:  # False for NaN
        return
    r, j = (int(v) for v in np.argwhere(~(np.abs(F) <= limit))[0])
    start = 0
    for c in columns:
        width = block_width(c)
        if j < start + width:
            break
        start += width
    value = None if frame is None else frame[c["name"]].iloc[r]
    raise FeatureValueError(first_row + r, c["name"], value,
                            "too far from the training values to be scaled (its standardised "
                            f"feature is not a finite {np.dtype(dtype).name})")


class FeatureValueError(ValueError):
    """A raw value whose feature is not finite; ``row``, ``column``, ``value`` and
    ``problem`` locate it (:func:`check_finite_features`)."""

    def __init__(self, row: int, column: str, value, problem: str) -> None:
        if value is not None:
            value = cell_text(value)
        self.row, self.column, self.value, self.problem = row, column, value, problem
        shown = "" if value is None else f" (value: {value!r})"
        super().__init__(f"row {row}, column {column!r}: {problem}{shown}")
