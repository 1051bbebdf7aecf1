"""Training data as train/dev/test splits: a session table or an event log.

* :func:`resolve_schema`: column roles, the UCI defaults overridden by a JSON config file,
  overridden by explicit roles;
* :class:`TableData`: a validated session table; ``split(seed)`` gives a seeded stratified
  split, preprocessed with a :class:`~features.tabular.Preprocessor` fitted on train;
* :class:`EventData`: time-based snapshots of an event log (the same for every seed);
* :class:`Split`: what both give: feature matrices, labels and the fitted preprocessing of
  the network and of the baseline.

Errors: :class:`~features.tabular.DataError` for a bad file, :class:`RolesError` for
impossible column roles, :class:`SplitError` for a split part without both classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nn_core.preprocessing import DEFAULT_RANK_KNOTS, FeatureValueError, check_finite_features
from nn_core.selection import jsonable

from .tabular import (
    DataError,
    Preprocessor,
    Schema,
    locate_row,
    read_table,
    schema_from_config,
    stratified_split,
)


class DatasetError(ValueError):
    """The data cannot be used as asked (a usage mistake rather than a bad file)."""


class RolesError(DatasetError):
    """Column roles that cannot be (a column in two roles, no feature column, ...)."""


class SplitError(DatasetError):
    """A part of the split lacks buyers or non-buyers (metrics need both classes)."""


@dataclass
class Split:
    """Feature matrices and labels of one train/dev/test split.

    Attributes
    ----------
    X : dict
        ``"train"``/``"dev"``/``"test"`` -> float64 matrix (n, d) of the network.
    y : dict
        ``"train"``/``"dev"``/``"test"`` -> int8 labels (n,).
    pre : Preprocessor
        The fitted preprocessing of the network's features.
    baseline_X : dict
        The baseline's feature matrices (the network's for a session table).
    baseline_pre : Preprocessor
    ids : dict
        ``"train"``/``"dev"``/``"test"`` -> what each row is (n,): for a session table the
        0-based data row of the file (header not counted), for an event log the user id
        (a train user appears once per training cutoff).
    id_name : str
        ``"row"`` or ``"user_id"``.
    train_frame : DataFrame or None
        The raw training rows (what ``pre`` was fitted on; their drift reference,
        ``nn_core/drift.py: fit_reference``).
    """

    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    pre: Preprocessor
    baseline_X: dict[str, np.ndarray]
    baseline_pre: Preprocessor
    ids: dict[str, np.ndarray]
    id_name: str
    train_frame: pd.DataFrame | None = None


def resolve_schema(
    config: str | os.PathLike | None = None,
    target: str | None = None,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    id_column: str | None = None,
    ranges: dict | None = None,
) -> Schema:
    """Column roles: UCI defaults, overridden by ``config``, overridden by the arguments.

    Parameters
    ----------
    config : path-like, optional
        JSON file with target/numeric/categorical/id_column/ranges
        (:func:`features.tabular.schema_from_config`).
    target, numeric, categorical, id_column : optional
        Roles that override the config file. Giving numeric or categorical columns (here or
        in the file) drops the UCI columns and ranges.
    ranges : dict, optional
        ``{column: (low, high)}`` (``None``: an open side), overriding the file's.

    Raises
    ------
    RolesError
        ``column roles: ...`` when the roles contradict each other.
    DataError
        When the config file cannot be read.
    """
    uci = Schema.uci()
    roles = {
        "target": uci.target,
        "numeric": uci.numeric,
        "categorical": uci.categorical,
        "id_column": None,
        "ranges": dict(uci.ranges),
    }
    custom = {}
    if config is not None:
        custom.update(schema_from_config(config))
    given = {"target": target, "numeric": numeric, "categorical": categorical,
             "id_column": id_column, "ranges": ranges}
    custom.update({k: v for k, v in given.items() if v is not None})
    if "numeric" in custom or "categorical" in custom:
        # Other roles: the UCI columns and ranges no longer apply.
        roles.update(numeric=(), categorical=(), ranges={})
    roles.update(custom)
    try:
        return Schema(**roles)
    except ValueError as exc:
        raise RolesError(f"column roles: {exc}") from None


class TableData:
    """A validated session table; ``split(seed)`` gives the preprocessed split.

    Parameters
    ----------
    path : path-like
        The session-table CSV.
    schema : Schema
        Column roles (:func:`resolve_schema`).
    fractions : sequence of 3 float
        Train, dev, test shares.
    hint : str
        Appended to the message of a missing column.
    dtype : {"float32", "float64"}
        The network's dtype: every feature must be a finite number of it.
    on_invalid : {"error", "skip", "impute"}
        What a bad cell does (``features.tabular.read_table``): stop with an error (the
        default), drop its row (:attr:`rejected` lists the cells, ``info["rejected"]``
        counts the rows per reason), or, for a missing feature cell, impute it with
        statistics of each split's training rows (the preprocessing stores them).
    numeric_encoding, ple_bins, ple_binning, rank_knots :
        The numeric columns' encoding (``features.tabular.Preprocessor``), fitted on each
        split's training rows (tree bins: with their labels).

    Raises
    ------
    DataError
        Naming file, row, column and value of the first problem.
    """

    def __init__(self, path: str | os.PathLike, schema: Schema,
                 fractions: Sequence[float] = (0.7, 0.15, 0.15), hint: str = "",
                 dtype: str = "float32", on_invalid: str = "error",
                 numeric_encoding: str = "standard", ple_bins: int = 16,
                 ple_binning: str = "quantile", rank_knots: int = DEFAULT_RANK_KNOTS) -> None:
        self.schema = schema
        self.dtype = dtype
        self.on_invalid = on_invalid
        self.numeric_encoding, self.ple_bins = numeric_encoding, ple_bins
        self.ple_binning, self.rank_knots = ple_binning, rank_knots
        self.frame, self.rejected = read_table(path, self.schema, on_invalid,
                                               with_target=True, hint=hint)
        self.y = self.frame[self.schema.target].to_numpy(dtype=np.int8)
        self.fractions = tuple(fractions)
        self.info = {
            "kind": "table",
            "path": str(path),
            "rows": len(self.frame),
            "positive_rate": float(self.y.mean()),
            "target": self.schema.target,
            "numeric": list(self.schema.numeric),
            "categorical": list(self.schema.categorical),
        }
        if on_invalid != "error":
            self.info["on_invalid"] = on_invalid
        if on_invalid == "skip":
            self.info["rejected"] = {"rows": len(self.rejected.rows),
                                     "by_reason": self.rejected.counts()}

    def split(self, seed: int) -> Split:
        """Stratified split of ``seed`` (``features.tabular.stratified_split``), preprocessed.

        Raises
        ------
        SplitError
            When a part has no buyers or only buyers.
        """
        parts = dict(zip(("train", "dev", "test"), stratified_split(self.y, seed, self.fractions),
                         strict=True))
        for name, rows in parts.items():
            n1 = int(self.y[rows].sum())
            if n1 == 0 or n1 == len(rows):
                raise SplitError(
                    f"{self.info['path']}: the {name} part of the split has {n1} buyers among "
                    f"{len(rows)} rows; it needs both classes (more data or other --split)"
                )
        pre = Preprocessor(
            self.schema.numeric,
            self.schema.categorical,
            target=self.schema.target,
            id_column=self.schema.id_column,
            impute=self.on_invalid == "impute",
            ranges=self.schema.ranges,
            numeric_encoding=self.numeric_encoding,
            ple_bins=self.ple_bins,
            ple_binning=self.ple_binning,
            rank_knots=self.rank_knots,
        ).fit(self.frame.iloc[parts["train"]], self.y[parts["train"]])
        # The file's 0-based data rows of the frame's rows (--on-invalid skip left some out).
        kept = np.setdiff1d(np.arange(len(self.frame) + len(self.rejected.rows)),
                            self.rejected.rows - 1)
        # The whole table at once, so that a message names the file's data row, not a row
        # of one part of the split.
        try:
            X_all = pre.transform(self.frame, dtype=self.dtype)  # the network's: no copy later
        except FeatureValueError as exc:  # a negative value in a column log1p'd on train rows
            raise self._located(exc, f"{exc.problem} (seed {seed}'s training part of the "
                                "split decided the transform)", kept) from None
        except ValueError as exc:
            raise DataError(self.info["path"], f"data {exc} (seed {seed}'s training part of "
                            "the split decided the transform)") from None
        try:
            check_finite_features(X_all, pre.columns, self.frame, dtype=self.dtype)
        except FeatureValueError as exc:
            raise self._located(exc, f"{exc.problem}; scaled as the training part of the "
                                f"split with seed {seed}", kept) from None
        X = {k: X_all[rows] for k, rows in parts.items()}
        y = {k: self.y[rows] for k, rows in parts.items()}
        return Split(X, y, pre, X, pre, {k: kept[rows] for k, rows in parts.items()}, "row",
                     self.frame.iloc[parts["train"]])


    def _located(self, exc: FeatureValueError, problem: str, kept: np.ndarray) -> DataError:
        """``problem`` of the frame's row ``exc.row`` (1-based) at the file's data row
        (``kept``: the file's 0-based data row of each frame row), with the line where it
        starts and its cell as written: the table is closed, so the file is read again."""
        return locate_row(DataError(self.info["path"], problem, int(kept[exc.row - 1]) + 1,
                                    exc.column, exc.value),
                          parsed=exc.column in self.schema.numeric)


class EventData:
    """Time-based splits of an event log (the same for every seed).

    Parameters
    ----------
    path : path-like or sequence of path-like
        The event-log CSV, or several read as one log (``features.events.read_events``).
    format : {"taobao", "rees46", "canonical"}
    horizon : str
        Label window after each cutoff, e.g. ``"1d"``.
    cutoff : str, optional
        ISO time of the test cutoff (default: log end - horizon).
    drop_invalid : bool
        Drop and count invalid events instead of failing.
    stride, min_history : str, optional
        Of the rolling training cutoffs (``features.events.rolling_cutoffs``).
    engine : {"pandas", "dask"}
        ``"dask"``: the snapshots are computed on a Dask cluster (``scheduler``: its
        address; default a LocalCluster), ``features.dask_engine``; the same frames.
    numeric_encoding, ple_bins, ple_binning, rank_knots :
        The model's feature encoding (``features.tabular.Preprocessor``), fitted on the
        training snapshot (tree bins: with its labels); the baseline keeps the standard one.

    Raises
    ------
    SplitError
        When a snapshot has no buyers or only buyers.
    """

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike],
                 format: str = "canonical", horizon: str = "1d", cutoff: str | None = None,
                 drop_invalid: bool = False, stride: str | None = None,
                 min_history: str = "1D", engine: str = "pandas",
                 scheduler: str | None = None, numeric_encoding: str = "standard",
                 ple_bins: int = 16, ple_binning: str = "quantile",
                 rank_knots: int = DEFAULT_RANK_KNOTS) -> None:
        from . import events  # lazy: table mode must not need it

        kwargs = dict(format=format, horizon=horizon, cutoff=cutoff, drop_invalid=drop_invalid,
                      stride=stride, min_history=min_history)
        if engine == "dask":
            from . import dask_engine

            with dask_engine.connect(scheduler):
                splits = dask_engine.load_event_splits(path, **kwargs)
        else:
            splits = events.load_event_splits(path, **kwargs)
        path = splits.info["path"]
        self.frames = {"train": splits.train, "dev": splits.dev, "test": splits.test}
        self.baseline_columns = list(splits.baseline_columns)
        self.source = {"kind": "events", "format": format, "horizon": horizon}
        self.encoding = {"numeric_encoding": numeric_encoding, "ple_bins": ple_bins,
                         "ple_binning": ple_binning, "rank_knots": rank_knots}
        for name, (_, y) in self.frames.items():
            if len(y) == 0 or y.nunique() < 2:
                raise SplitError(
                    f"{path}: the {name} snapshot needs buyers and non-buyers "
                    f"(got {int(y.sum())} of {len(y)} users buying); try another --horizon"
                )
        self.info = {"kind": "events", **self.source, "path": str(path),
                     "splits": jsonable(splits.info)}
        self._split: Split | None = None

    def split(self, seed: int) -> Split:
        """The split (``seed`` is ignored: it only changes initialisation and row order)."""
        del seed
        if self._split is None:
            train = self.frames["train"][0]
            pre = Preprocessor(list(train.columns), [], target="label", id_column="user_id",
                               source=self.source, **self.encoding).fit(
                                   train, self.frames["train"][1].to_numpy())
            base = Preprocessor(self.baseline_columns, [], target="label", id_column="user_id",
                                source=self.source).fit(train)
            X = {k: pre.transform(f[0]) for k, f in self.frames.items()}
            Xb = {k: base.transform(f[0]) for k, f in self.frames.items()}
            y = {k: f[1].to_numpy(dtype=np.int8) for k, f in self.frames.items()}
            ids = {k: f[0].index.to_numpy() for k, f in self.frames.items()}
            self._split = Split(X, y, pre, Xb, base, ids, "user_id", train)
        return self._split

