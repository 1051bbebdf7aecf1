"""scikit-learn's estimator interface over the hand-written network: :class:`PropensityClassifier`.

``PropensityClassifier`` is a binary classifier in scikit-learn's sense (``BaseEstimator``
and ``ClassifierMixin``): its constructor holds only hyper-parameters, ``fit(X, y)`` builds
an :class:`nn_core.MLP` whose input width is read from ``X`` and trains it with
:meth:`nn_core.MLP.fit` (the same code as ``train.py``: nothing of the math is redone
here), and ``predict_proba`` returns the ``(n, 2)`` float64 array scikit-learn expects.
So it can be cloned, grid-searched, cross-validated, calibrated, put in a ``Pipeline``
after ``features.tabular.Preprocessor`` and checked with
``sklearn.utils.estimator_checks.check_estimator`` (:data:`EXPECTED_FAILED_CHECKS` lists
the checks it does not pass, and why).

A fitted classifier is saved as a model directory (:meth:`PropensityClassifier.save`,
through ``nn_core.modeldir.save_model``: JSON and ``.npz``, never a pickle) and read back
with :func:`load`; the class labels and feature names travel in ``model.json``. Pickling
works too (for joblib and ``n_jobs``), but a pickle is not a model file.

scikit-learn is an optional extra (``pip install '.[sklearn]'``); only this module imports
it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .io import ModelFileError
from .modeldir import load_model, save_model
from .network import MLP
from .preprocessing import Preprocessing
from .training import History
from .validation import check_epochs, check_lr

#: The name under which ``model.json`` holds what the network alone does not say.
ESTIMATOR_KEY = "sklearn"

#: Checks of ``check_estimator`` that this classifier is expected to fail, with the reason
#: (pass as ``check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS)``).
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch training for a fixed number of epochs: a row of weight 2 is one row "
        "of a batch whose loss term counts twice, while the row repeated sits in two "
        "batches (other batches, other steps), so the two fits take different paths to "
        "the same minimiser and their probabilities differ by about 1e-6, not within the "
        "check's 1e-7; the weighted loss and gradient themselves equal those of repeated "
        "rows (tests/nn_core/test_sklearn.py)"
    ),
}


class PropensityClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier: the hand-written MLP behind scikit-learn's estimator interface.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers; ``()`` is logistic regression.
    activation : str
        Hidden activation, a key of ``nn_core.activations.ACTIVATIONS``.
    optimizer : {"adam", "sgd", "momentum", "nesterov"}
    lr : float
        Learning rate, a finite number > 0.
    batch_size : int
    epochs : int
        Passes over the training rows (fewer with early stopping), >= 1.
    l2 : float
        L2 penalty ``(l2/2) sum ||W||^2`` of the loss.
    dropout : float
        Probability of dropping a hidden unit while training.
    pos_weight : float
        Weight of the positive class (``classes_[1]``) in the loss.
    early_stopping : bool
        Hold out ``validation_fraction`` of the training rows (stratified), score them
        after every epoch, stop after ``patience`` epochs without improvement of
        ``monitor`` and end with the best epoch's weights (``MLP.fit``'s
        ``validation_data``, ``patience`` and ``restore_best``).
    validation_fraction : float
        Share of the rows held out with ``early_stopping``.
    patience : int
        Epochs without improvement before stopping (with ``early_stopping``).
    monitor : {"val_loss", "val_roc_auc"}
        What the best epoch is chosen by (with ``early_stopping``).
    dtype : {"float32", "float64"}
        Precision of the network.
    random_state : int, RandomState or None
        Seeds the initial weights (``MLP``'s default, LeCun normal: docs/math.md section 7),
        the row order of every epoch (and the dropout masks) and the early-stopping split.
    backend : {"numba", "numpy", "cupy"}
    threads : int or None
        Threads of the numba backend (``None``: all).
    warm_start : bool
        A new ``fit`` continues from the fitted network (and its optimizer state) instead
        of starting afresh; the data must have the same features and classes, and the
        architecture (``hidden``, ``activation``, ``dtype``, ``dropout``) stays the first
        fit's.
    verbose : {0, 1, 2}
        As ``MLP.fit``.

    Attributes
    ----------
    network_ : nn_core.MLP
        The fitted network; ``network_.predict_proba`` gives the probability of
        ``classes_[1]``.
    classes_ : ndarray of shape (2,)
        The two labels, sorted; ``classes_[1]`` is the positive class.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame with string column names.
    history_ : nn_core.History
        The last ``fit``'s per-epoch record.
    n_iter_ : int
        Epochs run by the last ``fit``.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        optimizer: str = "adam",
        lr: float = 1e-3,
        batch_size: int = 32,
        epochs: int = 50,
        l2: float = 0.0,
        dropout: float = 0.0,
        pos_weight: float = 1.0,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int = 10,
        monitor: str = "val_loss",
        dtype: str = "float64",
        random_state=None,
        backend: str = "numba",
        threads: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.dropout = dropout
        self.pos_weight = pos_weight
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.monitor = monitor
        self.dtype = dtype
        self.random_state = random_state
        self.backend = backend
        self.threads = threads
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, sample_weight=None) -> PropensityClassifier:
        """Train the network on ``X`` (n, d) and the two-class labels ``y`` (n,).

        Parameters
        ----------
        X : array-like of shape (n, d)
            Finite numbers; a DataFrame's column names are remembered.
        y : array-like of shape (n,)
            Exactly two distinct labels (numbers, strings or booleans).
        sample_weight : array-like of shape (n,), optional
            Non-negative weight of each row in the loss,
            ``L = (1/n) sum_i w_i l(z_i, y_i)``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For more or fewer than two classes, and for anything ``MLP`` or ``MLP.fit``
            refuses (naming the argument).
        """
        # Checked before anything is set, as MLP.fit will (scikit-learn checks its
        # hyper-parameters in fit, with a ValueError naming the parameter).
        check_epochs(self.epochs)
        check_lr(self.lr)
        warm = self.warm_start and hasattr(self, "network_")
        X, y = validate_data(self, X, y, reset=not warm, dtype=(np.float64, np.float32))
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError("Only binary classification is supported. The type of the "
                             f"target is {y_type}.")
        classes = np.unique(y)
        if classes.size != 2:
            raise ValueError(f"{type(self).__name__} needs samples of 2 classes; y holds "
                             f"{classes.size} class ({classes[0]!r})")
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start: y holds the classes {classes.tolist()}, the "
                             f"fitted classifier {self.classes_.tolist()}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        y01 = (y == classes[1]).astype(np.float64)
        # Both seeds are drawn on every fit, so that with an integer random_state a warm
        # start continues the row orders of the first fit (MLP.fit counts the epochs done):
        # fit(epochs=5) twice is fit(epochs=10) once.
        rng = check_random_state(self.random_state)
        seed, shuffle_seed = (int(v) for v in rng.randint(2**31 - 1, size=2))
        if not warm:  # built before anything is assigned: MLP checks the hyper-parameters
            network = MLP(X.shape[1], hidden=self.hidden, activation=self.activation,
                          dtype=self.dtype, seed=seed, backend=self.backend, dropout=self.dropout)
            self.classes_, self.network_ = classes, network
        (X, y01, sample_weight), validation = self._split(X, y01, sample_weight, rng)
        self.history_ = self.network_.fit(
            X, y01, sample_weight=sample_weight, epochs=self.epochs, batch_size=self.batch_size,
            optimizer=self.optimizer, lr=self.lr, pos_weight=self.pos_weight, l2=self.l2,
            shuffle_seed=shuffle_seed, threads=self.threads,
            validation_data=validation,
            monitor=self.monitor if validation is not None else None,
            patience=self.patience if validation is not None else None,
            verbose=self.verbose,
        )
        self.n_iter_ = self.history_.epochs
        return self

    def _split(self, X, y01, sample_weight, rng):
        """``(X, y, sample_weight)`` to train on and the held-out ``(X_dev, y_dev)`` or None.

        The held-out rows are ``validation_fraction`` of them, at least one per class (the
        dev ROC-AUC needs both), drawn per class. They are scored unweighted (``MLP.fit``'s
        ``val_loss`` and ``val_roc_auc``); their weights are dropped with them.
        """
        if not self.early_stopping:
            return (X, y01, sample_weight), None
        rows = np.arange(len(y01))
        n_dev = max(math.ceil(self.validation_fraction * len(rows)), 2)
        try:
            train, dev = train_test_split(rows, test_size=n_dev, stratify=y01,
                                          random_state=rng)
        except ValueError as e:
            raise ValueError(f"early_stopping: cannot hold out {n_dev} of {len(rows)} rows "
                             f"with both classes in each part ({e})") from None
        w = None if sample_weight is None else sample_weight[train]
        return (X[train], y01[train], w), (X[dev], y01[dev])

    # ------------------------------------------------------------------ predicting
    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of ``classes_[0]`` and ``classes_[1]`` for every row.

        Returns
        -------
        ndarray of shape (n, 2), float64
            Column 1 is the network's output ``p``, column 0 is ``1 - p``.
        """
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        p = np.asarray(self.network_.predict_proba(X, threads=self.threads), dtype=np.float64)
        return np.column_stack([1.0 - p, p])

    def predict_log_proba(self, X) -> np.ndarray:
        """``log(predict_proba(X))`` (n, 2)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The label of every row: ``classes_[1]`` where its probability exceeds 0.5."""
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.classes_[positive.astype(np.intp)]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike,
             preprocessing: Preprocessing | None = None) -> Path:
        """Write the fitted classifier as a model directory (``nn_core.modeldir.save_model``).

        ``model.json`` also records the class labels, the feature names and the
        hyper-parameters; with ``preprocessing`` (a fitted ``features.tabular.Preprocessor``,
        e.g. a pipeline's first step) the directory scores raw tables and is what
        ``predict.py`` and ``python -m nn_core.export`` read.

        Returns
        -------
        Path
            The directory.
        """
        check_is_fitted(self, "network_")
        extra = {
            "classes": self.classes_.tolist(),
            "feature_names_in": (self.feature_names_in_.tolist()
                                 if hasattr(self, "feature_names_in_") else None),
            "params": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in self.get_params().items() if k != "random_state"},
        }
        return save_model(path, self.network_, preprocessing, extra={ESTIMATOR_KEY: extra})


def load(path: str | os.PathLike, backend: str = "numba") -> PropensityClassifier:
    """Read a classifier saved with :meth:`PropensityClassifier.save`.

    Parameters
    ----------
    path : path-like
        The model directory.
    backend : {"numba", "numpy", "cupy"}

    Returns
    -------
    PropensityClassifier
        Fitted: ``network_``, ``classes_``, ``n_features_in_`` (and ``feature_names_in_``
        where it was saved); the hyper-parameters as saved (``random_state`` None).

    Raises
    ------
    nn_core.io.ModelFileError
        Anything ``load_model`` refuses, or a directory saved without the classifier's
        entry (``model.json`` written by ``train.py``, say).
    """
    predictor = load_model(path, backend=backend)
    entry = predictor.extra.get(ESTIMATOR_KEY)
    where = Path(path) / "model.json"
    if not predictor.ensemble.plain:
        raise ModelFileError(f"{where}: a combined model ({len(predictor.members)} networks, "
                             "a logit bias or a calibration); a classifier is one network")
    if not isinstance(entry, dict) or not isinstance(entry.get("classes"), list) \
            or len(entry["classes"]) != 2 or not isinstance(entry.get("params"), dict):
        raise ModelFileError(f"{where}: no {ESTIMATOR_KEY!r} entry with two classes and the "
                             "parameters (not saved by PropensityClassifier.save?)")
    params = dict(entry["params"], backend=backend)
    params["hidden"] = tuple(params.get("hidden", ()))
    try:
        clf = PropensityClassifier(**params)
    except TypeError as e:
        raise ModelFileError(f"{where}: unknown parameter in {ESTIMATOR_KEY!r} ({e})") from None
    clf.network_ = predictor.network
    clf.classes_ = np.asarray(entry["classes"])
    clf.n_features_in_ = predictor.network.n_inputs
    names = entry.get("feature_names_in")
    if names is not None:
        clf.feature_names_in_ = np.asarray(names, dtype=object)
    clf.history_ = History()
    clf.n_iter_ = 0
    return clf
