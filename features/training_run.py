"""A training run as a run directory: what ``train.py`` does once its command line is read.

* :func:`drift_reference`: the training distributions a saved model is checked against
  (``drift_reference.json``);
* :func:`write_importance`: ``importance.csv`` and ``importance.png`` of one seed's models;
* :func:`data_name`: the data's short name in plot titles.

The data is a ``features.datasets`` source (:class:`~features.datasets.TableData` or
:class:`~features.datasets.EventData`); training, evaluation and tuning are
``nn_core.selection``'s. This module imports nothing from the command lines
(``propensity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nn_core import selection
from nn_core.io import atomic_write

if TYPE_CHECKING:
    from nn_core.drift import Reference
    from nn_core.ensemble import Ensemble
    from nn_core.network import MLP
    from nn_core.preprocessing import Preprocessing
    from nn_core.selection import SeedRun

    from .datasets import Split


def drift_reference(model: MLP | Ensemble, pre: Preprocessing, split: Split,
                    X: Mapping[str, np.ndarray]) -> Reference:
    """The training distributions of a saved model's raw inputs and of its scores.

    Parameters
    ----------
    model : MLP or Ensemble
        The model saved with ``pre``.
    pre : Preprocessing
        Its fitted preprocessing (``split.pre``, or ``split.baseline_pre`` for the baseline).
    split : Split
        The split it was trained on: ``split.train_frame`` holds the raw training rows.
    X : mapping
        ``X["train"]``: the model's feature matrix (n, d) of those rows.

    Returns
    -------
    Reference
        For ``drift_reference.json`` (``nn_core/drift.py: fit_reference``): per raw column
        of ``split.train_frame`` and for the scores ``p = Predictor.proba(X["train"])``
        (what ``predict.py`` would score), the distribution ``predict.py``'s drift check
        compares new data with.
    """
    from nn_core.drift import fit_reference
    from nn_core.modeldir import Predictor

    scores = Predictor(model, pre, Path()).proba(X["train"])  # what predict.py would score
    return fit_reference(pre.columns, pre.inputs(split.train_frame), scores)


def write_importance(folder: Path, run: SeedRun, split: Split, repeats: int, seed: int,
                     threads: int | None, caption: str) -> list[str]:
    """Write ``importance.csv`` and ``importance.png`` for one seed's network and baseline.

    The permutation importance on dev of each raw column
    (``nn_core/importance.py: permutation_importance``: the drop of dev ROC-AUC when the
    column's features are shuffled, ``repeats`` permutations seeded with ``seed``).

    Parameters
    ----------
    folder : Path
        Where the two files go.
    run : SeedRun
        The seed's trained models (``run.model``, ``run.baseline``).
    split : Split
        That seed's split: the dev rows of both models' feature matrices.
    repeats : int
        Permutations per column (>= 1).
    seed : int
        Seed of the permutations.
    threads : int or None
        Numba threads of the scoring (None: all).
    caption : str
        The end of the plot's title, e.g. ``"data.csv, seed 0"``.

    Returns
    -------
    list of str
        The names of the files written: ``importance.csv`` (columns ``model, column,
        mean_drop, std_drop, rank``; ``model`` is ``mlp`` or ``baseline``) and
        ``importance.png``.
    """
    from nn_core import plots
    from nn_core.importance import permutation_importance

    results = {}
    for label, model, X, pre in (("MLP", run.model, split.X, split.pre),
                                 ("logistic regression", run.baseline, split.baseline_X,
                                  split.baseline_pre)):
        results[label] = permutation_importance(
            lambda X_, m=model: m.predict_proba(X_, threads=threads), X["dev"],
            split.y["dev"], pre.column_slices(), repeats, seed)
    rows = [row for key, imp in zip(("mlp", "baseline"), results.values(), strict=True)
            for row in imp.rows(key)]
    atomic_write(folder / "importance.csv", selection.csv_text(rows))
    plots.plot_importance({label: (imp.columns, imp.mean, imp.std)
                           for label, imp in results.items()}, folder / "importance.png",
                          title=f"Permutation importance, dev ({caption})")
    return ["importance.csv", "importance.png"]


def data_name(info: Mapping) -> str:
    """The data's short name for plot titles.

    Parameters
    ----------
    info : mapping
        The data source's ``info`` (``TableData.info``, ``EventData.info``).

    Returns
    -------
    str
        The file's name (for several event logs, the first file's and how many more), at
        most 40 characters.
    """
    paths = info["path"].split(", ") if info["kind"] == "events" else [info["path"]]
    name = Path(paths[0]).name + (f" +{len(paths) - 1} files" if len(paths) > 1 else "")
    return name if len(name) <= 40 else name[:39] + "…"
