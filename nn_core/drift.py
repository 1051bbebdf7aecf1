"""Input drift: each raw column's training distribution, and the population stability index.

A :class:`Reference` is the training split's distribution of every raw input column and of
the model's scores, stored with the model (``drift_reference.json``, written and read by
``nn_core/modeldir.py``):

- a numeric column (and the scores): interior quantile edges ``q_1 < ... < q_m`` of the
  training values at levels ``1/B, ..., (B-1)/B`` (``B`` = :data:`DEFAULT_BINS`), equal
  edges merged (a column that is mostly 0, such as PageValues, keeps one edge at 0), and
  the training count of each right-closed bin ``(-inf, q_1], (q_1, q_2], ..., (q_m, inf)``;
- a categorical column: the count of each training category, of the *unseen* bucket
  (values not seen in training; 0 in the training rows by construction);
- both: a last *missing* bucket (a cell imputed with ``--on-invalid impute``).

Columns are read from the raw-input matrix ``U`` of
``nn_core/preprocessing.py: Preprocessing.inputs`` (numeric values; a category as its
position ``k`` in ``0..K``, ``K`` = unseen; NaN = missing), so the bins are in the units of
the data file, and scoring, which computes ``U`` anyway, adds no parsing.

:class:`DriftMonitor` counts the bins of new rows chunk by chunk (counts add, so a file
larger than memory gives the same numbers as one chunk) and reports, for each column and
for the scores, the population stability index

    PSI = sum_i (a_i - e_i) ln(a_i / e_i),

``e_i`` the training proportion of bin ``i``, ``a_i`` the new data's, each raised to at
least :data:`EPSILON` (an empty bin would make the logarithm infinite). A PSI above 0.2
(:data:`DEFAULT_THRESHOLD`, the credit-scoring rule of thumb: below 0.1 stable, 0.1-0.2 a
moderate shift, above 0.2 a significant one) flags the column.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .io import ModelFileError

REFERENCE_FORMAT = "purchase-propensity-drift-reference"
REFERENCE_FORMAT_VERSION = 1
REPORT_FORMAT = "purchase-propensity-drift"
REPORT_FORMAT_VERSION = 1
#: Quantile bins per numeric column and for the scores (fewer where quantiles tie).
DEFAULT_BINS = 10
#: PSI above which a column is flagged.
DEFAULT_THRESHOLD = 0.2
#: The smallest proportion a bin counts with in the PSI (an empty bin would give ln 0).
EPSILON = 1e-4
#: Bucket names after the bins of a column.
UNSEEN, MISSING = "<unseen>", "<missing>"


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two distributions over the same bins.

    ``PSI = sum_i (a_i - e_i) ln(a_i / e_i)`` with ``e = expected / sum(expected)`` and
    ``a = actual / sum(actual)``, each proportion raised to at least ``epsilon`` first. It
    is the symmetric Kullback-Leibler divergence ``KL(a || e) + KL(e || a)``: 0 for equal
    distributions, positive otherwise.

    Parameters
    ----------
    expected, actual : array_like, shape (n_bins,)
        Counts (or proportions) per bin, non-negative, each with a positive sum.
    epsilon : float
        Floor of a proportion.

    Returns
    -------
    float
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"expected and actual must be 1-D of one length, got {e.shape} "
                         f"and {a.shape}")
    if (e < 0).any() or (a < 0).any() or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("counts must be >= 0 with a positive total")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(x: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Interior bin edges of ``x``: its quantiles at ``1/B, ..., (B-1)/B``, equal ones merged.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Finite values (NaN ones are left out).
    n_bins : int
        ``B``; ties give fewer bins (a constant column: one edge, two bins).

    Returns
    -------
    ndarray, shape (m,), strictly increasing, ``0 <= m <= B - 1`` (``m >= 1`` when ``x`` has
    a value)
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if not len(x):
        return np.empty(0)
    levels = np.arange(1, n_bins) / n_bins
    # "lower": every edge is a training value, so a tie mass (PageValues = 0 in most rows)
    # sits in one right-closed bin (-inf, 0] rather than being split at an interpolated edge.
    edges = np.unique(np.quantile(x, levels, method="lower")) if n_bins > 1 else np.empty(0)
    return edges if len(edges) else np.array([x[0]])


def bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the right-closed bins ``(-inf, e_1], ..., (e_m, inf)`` of ``x``, then of
    its NaN (missing) values: shape (m + 2,)."""
    x = np.asarray(x, dtype=np.float64)
    n_missing = np.count_nonzero(np.isnan(x))
    # #{x <= e_i} per edge: a few vectorised passes, an order of magnitude faster than a
    # binary search per value for the <= 10 edges here (NaN compares false: in no bin)
    at_most = [np.count_nonzero(x <= e) for e in edges]
    return np.diff(np.array([0, *at_most, len(x) - n_missing, len(x)], dtype=np.int64))


def category_counts(k: np.ndarray, n_categories: int) -> np.ndarray:
    """Counts of the positions ``0..K-1`` (the categories), ``K`` (unseen) and NaN
    (missing) in ``k``: shape (K + 2,)."""
    k = np.asarray(k, dtype=np.float64)
    missing = np.isnan(k)
    counts = np.bincount(k[~missing].astype(np.intp), minlength=n_categories + 1)
    return np.append(counts, np.count_nonzero(missing)).astype(np.int64)


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Names of the bins of ``bin_counts``: ``(-inf, 0]``, ``(0, 12.5]``, ..., ``<missing>``."""
    bounds = ["-inf", *(format(e, ".6g") for e in edges), "inf"]
    return [f"({lo}, {hi}]" if hi != "inf" else f"({lo}, inf)"
            for lo, hi in itertools.pairwise(bounds)] + [MISSING]


@dataclass
class Reference:
    """Training distributions of the raw columns and of the scores (``drift_reference.json``).

    Attributes
    ----------
    columns : list of dict
        Per raw column, in the preprocessing's order: ``{"name", "kind": "numeric",
        "edges": [...], "counts": [...]}`` (``len(edges) + 2`` counts: the bins, then
        missing) or ``{"name", "kind": "categorical", "categories": [...], "counts":
        [...]}`` (``K + 2`` counts: the categories, unseen, missing).
    scores : dict
        ``{"edges": [...], "counts": [...]}`` of the training scores (missing: 0).
    n_rows : int
        Training rows counted.
    """

    columns: list[dict]
    scores: dict
    n_rows: int

    def to_dict(self) -> dict:
        """The ``drift_reference.json`` document."""
        return {"format": REFERENCE_FORMAT, "format_version": REFERENCE_FORMAT_VERSION,
                "n_rows": self.n_rows, "columns": self.columns,
                "scores": self.scores}

    @staticmethod
    def from_dict(doc: Mapping, preprocessing_columns: Sequence[Mapping] | None,
                  path: str = "drift_reference.json") -> Reference:
        """The reference of a ``drift_reference.json`` document, checked entry by entry (and
        against the model's preprocessing columns: names, kinds and categories).

        Raises
        ------
        ModelFileError
            Naming the file and the first malformed entry.
        """
        def bad(problem: str) -> ModelFileError:
            return ModelFileError(f"{path}: {problem}")

        if not isinstance(doc, Mapping) or doc.get("format") != REFERENCE_FORMAT:
            raise bad(f"not a drift reference file (expected format {REFERENCE_FORMAT!r})")
        version = doc.get("format_version")
        if isinstance(version, bool) or version != REFERENCE_FORMAT_VERSION:
            raise bad(f"unsupported format_version {version!r}")
        n = doc.get("n_rows")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise bad(f"'n_rows' must be a positive integer, got {n!r}")
        columns = doc.get("columns")
        if not isinstance(columns, list):
            raise bad("'columns' must be a list")
        if preprocessing_columns is not None:
            names = [c["name"] for c in preprocessing_columns]
            if [c.get("name") if isinstance(c, Mapping) else None for c in columns] != names:
                raise bad(f"its columns differ from preprocess.json's {names} (files from "
                          "different runs?)")
        checked = []
        for i, c in enumerate(columns):
            where = f"columns[{i}]"
            if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
                raise bad(f"{where} must be an object with a 'name'")
            where += f" ({c['name']!r})"
            if c.get("kind") == "numeric":
                edges = _edges(c.get("edges"), bad, where)
                counts = _counts(c.get("counts"), len(edges) + 2, n, bad, where)
                checked.append({"name": c["name"], "kind": "numeric", "edges": edges,
                                "counts": counts})
            elif c.get("kind") == "categorical":
                cats = c.get("categories")
                if not isinstance(cats, list) or not all(isinstance(k, str) for k in cats):
                    raise bad(f"{where}: 'categories' must be a list of strings")
                counts = _counts(c.get("counts"), len(cats) + 2, n, bad, where)
                checked.append({"name": c["name"], "kind": "categorical",
                                "categories": list(cats), "counts": counts})
            else:
                raise bad(f"{where}: 'kind' must be 'numeric' or 'categorical'")
            if preprocessing_columns is not None:
                pc = preprocessing_columns[i]
                if pc["kind"] != checked[-1]["kind"] or (
                        pc["kind"] == "categorical" and pc["categories"] != checked[-1][
                            "categories"]):
                    raise bad(f"{where}: kind or categories differ from preprocess.json's "
                              "(files from different runs?)")
        scores = doc.get("scores")
        if not isinstance(scores, Mapping):
            raise bad("'scores' must be an object with 'edges' and 'counts'")
        edges = _edges(scores.get("edges"), bad, "scores")
        return Reference(checked, {"edges": edges,
                                   "counts": _counts(scores.get("counts"), len(edges) + 2, n,
                                                     bad, "scores")}, n)


def _edges(edges, bad, where: str) -> list[float]:
    ok = (isinstance(edges, list) and len(edges) >= 1
          and all(isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e)
                  for e in edges)
          and all(a < b for a, b in itertools.pairwise(edges)))
    if not ok:
        raise bad(f"{where}: 'edges' must be a non-empty list of increasing finite numbers")
    return [float(e) for e in edges]


def _counts(counts, length: int, n: int, bad, where: str) -> list[int]:
    ok = (isinstance(counts, list) and len(counts) == length
          and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in counts)
          and sum(counts) == n)
    if not ok:
        raise bad(f"{where}: 'counts' must be {length} non-negative integers summing to "
                  f"n_rows ({n})")
    return list(counts)


def fit_reference(columns: Sequence[Mapping], U: np.ndarray, scores: np.ndarray,
                  n_bins: int = DEFAULT_BINS) -> Reference:
    """The reference distributions of training rows.

    Parameters
    ----------
    columns : list of dict
        The preprocessing's columns (``Preprocessing.columns``): name, kind, categories.
    U : ndarray, shape (n, n_columns)
        Their raw inputs (``Preprocessing.inputs`` of the training rows).
    scores : ndarray, shape (n,)
        The model's scores of the same rows.
    n_bins : int
        Quantile bins per numeric column and for the scores.

    Returns
    -------
    Reference
    """
    U = np.asarray(U, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if U.ndim != 2 or U.shape[1] != len(columns) or len(scores) != len(U) or not len(U):
        raise ValueError(f"U must be (n, {len(columns)}) and scores (n,) with n >= 1, got "
                         f"{U.shape} and {scores.shape}")
    out = []
    for i, c in enumerate(columns):
        if c["kind"] == "numeric":
            edges = quantile_edges(U[:, i], n_bins)
            out.append({"name": c["name"], "kind": "numeric", "edges": edges.tolist(),
                        "counts": bin_counts(U[:, i], edges).tolist()})
        else:
            cats = list(c["categories"])
            out.append({"name": c["name"], "kind": "categorical", "categories": cats,
                        "counts": category_counts(U[:, i], len(cats)).tolist()})
    edges = quantile_edges(scores, n_bins)
    return Reference(out, {"edges": edges.tolist(),
                           "counts": bin_counts(scores, edges).tolist()}, len(U))


class DriftMonitor:
    """Bin counts of new rows against a :class:`Reference`, accumulated chunk by chunk.

    ``update(U, p)`` for each chunk (the raw inputs and the scores, as the scoring path
    computes them), then :meth:`report`. Memory is the bin counts, whatever the rows.
    """

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.counts = [np.zeros(len(c["counts"]), dtype=np.int64) for c in reference.columns]
        self.score_counts = np.zeros(len(reference.scores["counts"]), dtype=np.int64)
        self._edges = [np.asarray(c["edges"]) if c["kind"] == "numeric" else None
                       for c in reference.columns]
        self.n = 0

    def update(self, U: np.ndarray, p: np.ndarray) -> None:
        """Add a chunk: ``U`` (n, n_columns) raw inputs, ``p`` (n,) scores."""
        for i, c in enumerate(self.reference.columns):
            if c["kind"] == "numeric":
                self.counts[i] += bin_counts(U[:, i], self._edges[i])
            else:
                self.counts[i] += category_counts(U[:, i], len(c["categories"]))
        self.score_counts += bin_counts(p, np.asarray(self.reference.scores["edges"]))
        self.n += len(p)

    def report(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """The drift report (``drift.json``): per column and for the scores the PSI, the bins
        and their expected (training) and actual proportions; the columns above
        ``threshold`` in ``flagged`` (largest PSI first), ``scores_flagged``.

        Raises
        ------
        ValueError
            When no row was counted.
        """
        if self.n == 0:
            raise ValueError("no rows were scored: no drift to report")

        def entry(kind: str, labels: list[str], expected, actual) -> dict:
            e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
            return {"kind": kind, "psi": psi(e, a), "bins": labels,
                    "expected": (e / e.sum()).tolist(), "actual": (a / a.sum()).tolist()}

        columns = {}
        for c, actual in zip(self.reference.columns, self.counts, strict=True):
            labels = (bin_labels(c["edges"]) if c["kind"] == "numeric"
                      else [*c["categories"], UNSEEN, MISSING])
            columns[c["name"]] = entry(c["kind"], labels, c["counts"], actual)
        s = self.reference.scores
        scores = entry("scores", bin_labels(s["edges"]), s["counts"], self.score_counts)
        flagged = sorted((name for name, v in columns.items() if v["psi"] > threshold),
                         key=lambda name: -columns[name]["psi"])
        return {"format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
                "rows": self.n, "reference_rows": self.reference.n_rows,
                "threshold": threshold, "epsilon": EPSILON,
                "psi": "sum over bins of (a - e) ln(a / e); e, a: the training and the new "
                       "proportions, each at least epsilon",
                "flagged": flagged, "scores_flagged": scores["psi"] > threshold,
                "columns": columns, "scores": scores}


def warning_line(report: Mapping, most: int = 8) -> str | None:
    """One line naming the flagged columns (the ``most`` largest PSI first, then how many
    more) and the scores, with their PSI; ``None`` when nothing is above the threshold."""
    flagged = report["flagged"]
    parts = [f"{name} {report['columns'][name]['psi']:.3g}" for name in flagged[:most]]
    if len(flagged) > most:
        more = len(flagged) - most
        parts.append(f"{more} more column{'s' if more > 1 else ''}")
    if report["scores_flagged"]:
        parts.append(f"scores {report['scores']['psi']:.3g}")
    if not parts:
        return None
    return f"input drift (PSI above {report['threshold']:g}): {', '.join(parts)}"
