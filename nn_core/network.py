"""The multilayer perceptron: ``H_l = f(H_{l-1} W_l + b_l)``, ``Y = g(H_{L-1} W_L + b_L)``.

:class:`MLP` owns the parameters and the training loop; the arithmetic is
done by a backend chosen by name:

* ``numpy``: ``nn_core/reference.py``, the readable reference and the oracle;
* ``numba``: ``nn_core/kernels.py``, compiled kernels (the default);
* ``cupy``: ``nn_core/reference.py`` again, on the GPU, with its element-wise
  rules fused (``nn_core/backends.py``).

All parameters live in one flat vector ``theta``; ``params`` gives the
``(W, b)`` pairs as views into it. One flat vector lets an optimizer update
every parameter in one loop, and lets a compiled kernel take the whole
network as three arrays (``theta``, its ``layout`` and the gradient).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from . import backends, kernels, reference
from .activations import ACTIVATIONS
from .losses import OUTPUTS, sample_scale
from .optim import Optimizer, learning_rate
from .training import EpochEnd, History, check_options
from .validation import as_integer, as_matrix, as_number, as_vector, check_epochs, check_lr

DTYPES = ("float32", "float64")
#: Size limits checked by ``MLP.__init__`` before anything is allocated.
MAX_INPUTS = 1_048_576  # input width (features after one-hot encoding)
MAX_WIDTH = 65_536  # widest hidden layer
MAX_PARAMETERS = 2**31  # weights and biases together
MAX_HIDDEN_LAYERS = 256  # depth


def aligned_zeros(n: int, dtype, alignment: int = 64) -> np.ndarray:
    """A zero vector of ``n`` elements whose first element starts a 64-byte cache line.

    With ``theta`` aligned, a weight row whose offset is a multiple of 16
    float32s (every row of a 64-wide layer) is read with vector loads that
    never straddle two cache lines; single-row prediction of the benchmark
    network is about 8 % faster than from NumPy's usual 16-byte alignment.
    """
    itemsize = np.dtype(dtype).itemsize
    buf = np.zeros(n * itemsize + alignment, dtype=np.uint8)
    start = -buf.ctypes.data % alignment
    return buf[start : start + n * itemsize].view(dtype)


class MLP:
    """A fully connected network with one output unit.

    Parameters
    ----------
    n_inputs : int
        Width ``d_0`` of the input rows.
    hidden : sequence of int
        Widths of the hidden layers; ``()`` gives logistic (or linear) regression.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid", "identity"}
        Hidden activation ``f``.
    output : {"sigmoid", "identity"}
        ``sigmoid`` with binary cross-entropy (probabilities), or ``identity``
        with half squared error (values).
    dtype : {"float32", "float64"}
    seed : int
        Seed of the initial weights.
    backend : {"numba", "numpy", "cupy"}
    dropout : float
        Probability of dropping a hidden unit during ``fit`` (inverted dropout).

    Raises
    ------
    ValueError
        Naming the argument, before anything is allocated: ``n_inputs``, the widths in
        ``hidden`` and ``seed`` must be integers (Python or NumPy integers; a float with no
        fractional part such as ``2.0`` is accepted, ``2.7``, ``True`` or ``"five"`` are
        not); ``n_inputs >= 1``, widths ``>= 1``, ``seed >= 0``. Size limits:
        ``n_inputs <= MAX_INPUTS`` (1,048,576), every hidden width ``<= MAX_WIDTH``
        (65,536), at most ``MAX_HIDDEN_LAYERS`` (256) hidden layers and at most
        ``MAX_PARAMETERS`` (2**31) weights and biases in all.

    Notes
    -----
    Initial weights: LeCun normal, ``W ~ N(0, 1 / fan_in)``, in every layer and
    for every activation; biases start at 0. This keeps the variance of a unit
    of slope 1 (the output logit, tanh near 0), starts the output near a
    constant, and lets Adam's steps of about ``lr`` per weight move the
    weights faster, relative to their size, than He's ``2 / fan_in`` does
    (docs/math.md section 7 gives the argument and the measurements).
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        output: str = "sigmoid",
        dtype: str = "float32",
        seed: int = 0,
        backend: str = "numba",
        dropout: float = 0.0,
    ):
        n_inputs = as_integer(n_inputs, "n_inputs")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if n_inputs > MAX_INPUTS:
            raise ValueError(f"n_inputs must be <= {MAX_INPUTS:,}, got {n_inputs:,}")
        if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence | np.ndarray):
            raise ValueError(f"hidden must be a sequence of layer widths, e.g. (64, 64), "
                             f"got {hidden!r}")
        if len(hidden) > MAX_HIDDEN_LAYERS:
            raise ValueError(f"hidden has {len(hidden):,} layers; at most {MAX_HIDDEN_LAYERS} "
                             "are allowed")
        hidden = tuple(as_integer(h, f"hidden[{i}]") for i, h in enumerate(hidden))
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {hidden}")
        if any(h > MAX_WIDTH for h in hidden):
            raise ValueError(f"hidden layer widths must be <= {MAX_WIDTH:,}, got {hidden}")
        sizes = [n_inputs, *hidden, 1]
        n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
        if n_params > MAX_PARAMETERS:
            raise ValueError(f"n_inputs={n_inputs:,} and hidden={hidden} give {n_params:,} "
                             f"parameters; at most {MAX_PARAMETERS:,} are allowed")
        seed = as_integer(seed, "seed")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float | np.number):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {list(OUTPUTS)}")
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_inputs = int(n_inputs)
        self.hidden = hidden
        self.activation = activation
        self.output = output
        self.dtype = str(dtype)
        self._np_dtype = np.dtype(self.dtype)
        # The kernels' indices of f and g, for predict_proba's few-row path.
        self._kernel_rules = (kernels.activation_index(activation), kernels.output_index(output))
        self.seed = int(seed)
        self.dropout = float(dropout)
        self.backend = backend
        widths = [self.n_inputs, *hidden, 1]
        rows, off = [], 0
        for fan_in, fan_out in itertools.pairwise(widths):
            rows.append((off, off + fan_in * fan_out, fan_in, fan_out))
            off += fan_in * fan_out + fan_out
        #: ``layout[l] = (w_off, b_off, fan_in, fan_out)`` of layer ``l`` in ``theta``.
        self.layout = np.array(rows, dtype=np.int64)
        self.theta = aligned_zeros(off, self.dtype)
        # 1 on weights, 0 on biases: where L2 and weight decay apply.
        self.decay_mask = np.zeros(off, dtype=self.dtype)
        for w_off, b_off, _, _ in rows:
            self.decay_mask[w_off:b_off] = 1
        self._init_weights()
        self._optimizer: Optimizer | None = None
        self._epochs_done = 0

    @property
    def backend(self) -> str:
        """Name of the backend that trains and predicts (may be reassigned)."""
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._backend = backends.check_backend(name)
        # The dtype that takes predict_proba's compiled few-row path; None
        # (which no array's dtype is) turns that path off for other backends.
        self._fast_dtype = self._np_dtype if self._backend == "numba" else None

    # --- parameters ----------------------------------------------------------
    def _init_weights(self) -> None:
        """LeCun normal weights, ``W_l ~ N(0, 1 / d_{l-1})``, zero biases (docs/math.md §7)."""
        rng = np.random.default_rng(self.seed)
        for W, _ in self.params:
            fan_in = W.shape[0]
            # Var(z_j) = fan_in Var(W) E[h^2] = E[h^2]: a unit of slope 1 keeps its
            # input's scale. Not He's 2 / fan_in: with Adam (steps of about lr per
            # weight) a larger W is a smaller relative step, which measured slower.
            W[...] = rng.normal(0.0, math.sqrt(1.0 / fan_in), size=W.shape)

    def unflatten(self, vector) -> list:
        """Views ``[(W_0, b_0), ...]`` of a flat vector laid out like ``theta``."""
        out = []
        for w_off, b_off, fan_in, fan_out in self.layout:
            out.append(
                (vector[w_off:b_off].reshape(fan_in, fan_out), vector[b_off : b_off + fan_out])
            )
        return out

    @property
    def params(self) -> list:
        """List of ``(W, b)`` per layer, views into ``theta``; ``W`` has shape (fan_in, fan_out)."""
        return self.unflatten(self.theta)

    @property
    def n_params(self) -> int:
        """Number of scalar parameters."""
        return int(self.theta.shape[0])

    def get_weights(self) -> list:
        """A copy of ``params`` (list of ``(W, b)``)."""
        return [(W.copy(), b.copy()) for W, b in self.params]

    def set_weights(self, weights: Sequence) -> None:
        """Copy ``weights`` (a list of ``(W, b)`` shaped like ``params``) into the network."""
        if len(weights) != len(self.layout):
            raise ValueError(f"expected {len(self.layout)} (W, b) pairs, got {len(weights)}")
        for (W, b), (W_new, b_new) in zip(self.params, weights, strict=False):
            if np.shape(W_new) != W.shape or np.shape(b_new) != b.shape:
                raise ValueError(f"shape mismatch: {np.shape(W_new)} for W of shape {W.shape}")
            W[...] = W_new
            b[...] = b_new

    # --- validation -----------------------------------------------------------
    def _check_Xy(self, X, y, sample_weight):
        X = as_matrix(X, self.n_inputs, self._np_dtype)
        y = as_vector(y, X.shape[0], self.dtype, "y")
        if self.output == "sigmoid" and not np.isin(y, (0, 1)).all():
            bad = y[~np.isin(y, (0, 1))][0]
            raise ValueError(f"y must hold 0/1 labels for the sigmoid output, found {bad!r}")
        if sample_weight is not None:
            sample_weight = as_vector(sample_weight, X.shape[0], self.dtype, "sample_weight")
            if (sample_weight < 0).any():
                raise ValueError("sample_weight must be >= 0")
        return X, y, sample_weight

    def _check_pos_weight(self, pos_weight: float) -> float:
        pos_weight = self._check_scalar("pos_weight", pos_weight)
        if self.output != "sigmoid" and pos_weight != 1.0:
            raise ValueError("pos_weight is for 0/1 labels (the sigmoid output); use sample_weight")
        return pos_weight

    @staticmethod
    def _check_scalar(name: str, value: float, low: float = 0.0) -> float:
        """``value`` as a finite float ``>= low`` (:func:`nn_core.validation.as_number`)."""
        return as_number(value, name, low)

    # --- math -------------------------------------------------------------------
    def predict_proba(self, X, threads: int | None = None) -> np.ndarray:
        """Predictions ``Y = g(Z)`` for every row of ``X``.

        Parameters
        ----------
        X : array of shape (n, n_inputs)
        threads : int, optional
            Threads for the ``numba`` backend (restored afterwards).

        Returns
        -------
        array of shape (n,)
            Probabilities (sigmoid output) or values (identity output).
        """
        if (
            type(X) is np.ndarray
            and X.dtype is self._fast_dtype
            and (threads is None or threads == 1)
        ):
            # Fast path for a few rows (online scoring): the fewest checks
            # that keep it safe, then one compiled call, which also checks
            # the input for NaN and infinity. Anything else takes the
            # general path below, which explains what is wrong with X.
            shape = X.shape
            if len(shape) == 2 and 0 < shape[0] <= 16 and shape[1] == self.n_inputs:
                p = np.empty(shape[0], self._fast_dtype)
                act, out = self._kernel_rules
                if kernels.few_rows_kernel(act)(X, self.theta, self.layout, out, p):
                    return p
        # The numba kernel checks finiteness while it reads X (one pass, not two).
        X = as_matrix(X, self.n_inputs, self._np_dtype, check_finite=self.backend != "numba")
        return backends.get(self.backend).predict(self, X, threads)

    def input_gradient(self, X, output: str = "logit") -> np.ndarray:
        """Gradient of each row's output with respect to its inputs (no dropout), float64.

        ``output="logit"``: ``dz/dX`` of the output logit ``z``
        (:func:`nn_core.reference.input_gradient`); ``output="probability"``:
        ``dY/dX = sigma'(z) dz/dX = Y (1 - Y) dz/dX`` for the sigmoid output. Row
        ``i`` of ``z`` depends only on row ``i`` of ``X``, so ``dX[i, j] = dz_i /
        dX[i, j]`` (docs/math.md, "Gradients with respect to the inputs").

        Every backend computes it with the float64 reference on the host: it serves
        explanations (``nn_core/explain.py``), not training, and float64 keeps the
        integrated-gradients completeness check free of rounding.

        Parameters
        ----------
        X : array of shape (n, n_inputs)
        output : {"logit", "probability"}
            ``"probability"`` needs the sigmoid output.

        Returns
        -------
        array of shape (n, n_inputs), float64
        """
        if output not in ("logit", "probability"):
            raise ValueError(f"output must be 'logit' or 'probability', got {output!r}")
        if output == "probability" and self.output != "sigmoid":
            raise ValueError("output='probability' needs the sigmoid output (this network's "
                             f"output is {self.output!r})")
        X = as_matrix(X, self.n_inputs, np.dtype(np.float64))
        r = reference.rules(self.activation, self.output)
        z, dX = reference.input_gradient(self.unflatten(self.theta.astype(np.float64)), X, r)
        if output == "probability":
            Y = r.g(z)
            dX *= (Y * (1 - Y))[:, None]
        return dX

    def loss_and_grad(self, X, y, sample_weight=None, pos_weight: float = 1.0, l2: float = 0.0):
        """Loss and gradient of every parameter on ``(X, y)`` (no dropout).

        ``L = (1/n) sum_i s_i l(z_i, y_i) + (l2/2) sum_l ||W_l||^2``, with
        ``s_i = sample_weight_i * (pos_weight if y_i = 1 else 1)``.

        Returns
        -------
        loss : float
        grads : list of (dW, db)
            Same order and shapes as ``params``.
        """
        X, y, sample_weight = self._check_Xy(X, y, sample_weight)
        pos_weight = self._check_pos_weight(pos_weight)
        l2 = self._check_scalar("l2", l2)
        s = sample_scale(y, sample_weight, pos_weight)
        return backends.get(self.backend).loss_and_grad(self, X, y, s, l2)

    def fit(
        self,
        X,
        y,
        epochs: int = 10,
        batch_size: int = 32,
        optimizer: str = "adam",
        lr: float = 1e-3,
        sample_weight=None,
        pos_weight: float = 1.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: str = "constant",
        step_size: int = 10,
        gamma: float = 0.5,
        lr_min: float = 0.0,
        shuffle_seed: int = 0,
        threads: int | None = None,
        callback: Callable[[int, float], bool] | None = None,
        validation_data: tuple | None = None,
        monitor: str | None = None,
        patience: int | None = None,
        restore_best: bool = True,
        verbose: int = 0,
        metrics_on_train: bool = False,
        desc: str | None = None,
    ) -> History:
        """Mini-batch training; a later call continues with the same optimizer state.

        Parameters
        ----------
        X : array of shape (n, n_inputs)
        y : array of shape (n,)
        epochs, batch_size : int
            Passes over the rows (>= 1), and rows per step (>= 1).
        optimizer : {"sgd", "momentum", "nesterov", "adam"}
            ``momentum`` with ``nesterov=True`` is the same as ``nesterov``.
        lr : float
            Base learning rate of the schedule, a finite number > 0.
        sample_weight : array of shape (n,), optional
        pos_weight : float
            Weight of positive samples in the loss.
        l2 : float
            L2 penalty ``(l2/2) sum ||W||^2`` (weights only), part of the loss.
        weight_decay : float
            Decoupled weight decay (AdamW style), applied to weights only.
        momentum : float
            ``mu`` of momentum / Nesterov.
        betas, eps :
            Adam's hyper-parameters.
        schedule : {"constant", "step", "cosine"}
            Learning-rate schedule over this call's epochs (``step_size``, ``gamma``: step;
            ``lr_min``: cosine).
        shuffle_seed : int
            Seed of the per-epoch row orders (and of the dropout masks).
        threads : int, optional
            Threads for the ``numba`` backend (restored afterwards).
        callback : callable, optional
            ``callback(epoch, train_loss) -> bool`` after each epoch (0-based ``epoch`` of
            this call; after the validation scores are recorded); ``True`` stops.
        validation_data : (X_dev, y_dev), optional
            Rows scored after every epoch: ``val_loss`` (log-loss of ``predict_proba``) and
            ``val_roc_auc``; needs the sigmoid output and both classes in ``y_dev``.
        monitor : {"val_loss", "val_roc_auc"}, optional
            What the best epoch maximises (``-val_loss`` or ``val_roc_auc``); default
            ``"val_loss"`` with validation data.
        patience : int, optional
            Early stopping: stop after this many epochs without strict improvement of the
            monitored score. ``None`` (the default) runs every epoch.
        restore_best : bool
            With validation data, end with the weights of the best epoch (stopped early or
            not), as Keras' ``EarlyStopping(restore_best_weights=True)``.
        verbose : {0, 1, 2}
            0 silent; 1 a progress bar (tqdm, on stderr) when stderr is a terminal, else
            one line on stderr at the end (epochs, best epoch, dev score, time); 2 one line per
            epoch on stdout (``Epoch 3/10 - loss: ... - val_loss: ...``, ``*`` marks a
            new best epoch).
        metrics_on_train : bool
            Also record ``train_loss``: the log-loss of ``predict_proba`` on the training
            rows after each epoch (comparable with ``val_loss``, unlike the objective).
        desc : str, optional
            Label of the progress bar or prefix of the epoch lines.

        Returns
        -------
        History
            ``history["loss"]``: the training objective of each epoch (mean over its
            mini-batches); with validation data ``val_loss``, ``val_roc_auc`` and
            ``best_epoch``; see :class:`nn_core.training.History`.

        Examples
        --------
        >>> history = m.fit(X, y, epochs=200, validation_data=(X_dev, y_dev),
        ...                 monitor="val_roc_auc", patience=10)  # doctest: +SKIP
        >>> history.best_epoch, history["val_roc_auc"][history.best_epoch - 1]  # doctest: +SKIP
        """
        X, y, sample_weight = self._check_Xy(X, y, sample_weight)
        epochs, batch_size = check_epochs(epochs), as_integer(batch_size, "batch_size")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # A batch larger than the data is the whole data: one batch per epoch either way, and
        # no buffer is sized by a batch_size of 10**10.
        batch_size = min(batch_size, X.shape[0])
        lr = check_lr(lr)
        shuffle_seed = as_integer(shuffle_seed, "shuffle_seed")
        if shuffle_seed < 0:
            raise ValueError(f"shuffle_seed must be >= 0, got {shuffle_seed}")
        if threads is not None and as_integer(threads, "threads") < 1:
            raise ValueError(f"threads must be >= 1 (or None: all), got {threads}")
        pos_weight = self._check_pos_weight(pos_weight)
        l2 = self._check_scalar("l2", l2)
        name = "nesterov" if optimizer == "momentum" and nesterov else optimizer
        # A new Optimizer validates the hyper-parameters; continuing with the
        # same optimizer keeps its state (moments and step count).
        opt = Optimizer(name, self.n_params, self.dtype, momentum, betas, eps, weight_decay)
        if self._optimizer is not None and self._optimizer.name == name:
            opt.m, opt.v, opt.t = self._optimizer.m, self._optimizer.v, self._optimizer.t
        learning_rate(schedule, lr, 0, epochs, step_size, gamma, lr_min)  # validates the schedule
        monitor = check_options(
            validation_data is not None, monitor, patience, restore_best, verbose,
            metrics_on_train,
        )
        validation = None if validation_data is None else self._check_validation(validation_data)
        self._optimizer = opt
        s = sample_scale(y, sample_weight, pos_weight)
        backend = backends.get(self.backend)
        end = EpochEnd(
            # Validated rows go straight to the backend: predict_proba's general path.
            lambda rows: backend.predict(self, rows, threads),
            self.get_weights,
            self.set_weights,
            validation=validation,
            train=(X, y) if metrics_on_train else None,
            monitor=monitor,
            patience=patience,
            restore_best=restore_best,
            verbose=verbose,
            epochs=epochs,
            desc=desc,
        )

        def on_epoch(epoch: int, loss: float) -> bool:
            self._epochs_done += 1
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {loss}); lower the learning rate "
                    f"(lr={lr:g}) or the penalties (l2={l2:g}, weight_decay={weight_decay:g})"
                )
            stop = end(loss)
            return bool(callback is not None and callback(epoch, loss)) or stop

        try:
            backend.fit(
                self,
                X,
                y,
                s,
                epochs,
                batch_size,
                opt,
                l2,
                shuffle_seed,
                self._epochs_done,
                threads,
                lambda e: learning_rate(schedule, lr, e, epochs, step_size, gamma, lr_min),
                on_epoch,
                weights_each_epoch=callback is not None or validation is not None
                or metrics_on_train,
            )
        finally:
            end.close()
        return end.finish()

    def _check_validation(self, validation_data) -> tuple[np.ndarray, np.ndarray]:
        """``fit``'s ``validation_data`` as checked ``(X_dev, y_dev)`` arrays."""
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_dev, y_dev)")
        if self.output != "sigmoid":
            raise ValueError("validation_data: val_loss and val_roc_auc need the sigmoid output")
        X_dev = as_matrix(validation_data[0], self.n_inputs, self._np_dtype, "validation_data X")
        y_dev = as_vector(validation_data[1], X_dev.shape[0], self.dtype, "validation_data y")
        n1 = int(np.count_nonzero(y_dev == 1))
        if n1 + int(np.count_nonzero(y_dev == 0)) != len(y_dev):
            raise ValueError("validation_data y must hold 0/1 labels")
        if n1 in (0, len(y_dev)):
            raise ValueError(f"validation_data y needs both classes for val_roc_auc (got {n1} "
                             f"positives among {len(y_dev)} rows)")
        return X_dev, y_dev

    # --- files -----------------------------------------------------------------
    def config(self) -> dict:
        """The architecture as a JSON-serialisable dict (what ``model.json`` records)."""
        return {
            "n_inputs": self.n_inputs,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "output": self.output,
            "dtype": self.dtype,
            "dropout": self.dropout,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        return (
            f"MLP(n_inputs={self.n_inputs}, hidden={self.hidden}, activation={self.activation!r}, "
            f"output={self.output!r}, dtype={self.dtype!r}, backend={self.backend!r})"
        )
