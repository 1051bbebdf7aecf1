"""Several networks as one model: a weighted sum of their logits, then a calibration.

An :class:`Ensemble` holds members ``(MLP_k, w_k)`` (all with the sigmoid output, the same
inputs and dtype), a bias ``c`` and optionally a calibration (``nn_core/calibration.py``):

    ``z(x) = c + sum_k w_k z_k(x)``,  ``p = sigma(z)``,  ``q = calibration(z)`` (or ``p``)

where ``z_k`` is member ``k``'s output logit (its last linear layer, before the sigmoid).

* A seed ensemble of K networks: ``w_k = 1/K``, ``c = 0`` (the mean logit).
* Fusion with a logistic regression (an MLP with ``hidden=()``), the combination chosen on
  dev (:func:`blend`, :func:`stack`): a blend ``z = (1 - alpha) zbar_net + alpha z_LR`` with
  ``alpha`` on a grid, or a stacked logistic regression ``z = c + sum_k w_k z_k`` fitted on
  the members' dev logits.
* A mixed ensemble: member ``k`` trained on the columns ``cols_k`` of the features alone
  (e.g. one numeric encoding of several in ``X``), ``z_k(x) = z'_k(x[cols_k])``, stored
  as a network of all the columns whose first-layer rows outside ``cols_k`` are zero
  (:func:`embed_inputs`): the sum above, the files and the exporters are unchanged.
* A plain model is ``[(network, 1.0)]``, ``c = 0``, no calibration: its probabilities are the
  network's own ``predict_proba`` (the same numbers, the same fast path).
* Members of one hidden layer each (one activation) are one network of all their hidden
  units, ``sum_k w_k z_k = f(X [W_1 ... W_K] + [b_1 ... b_K]) [w_1 v_1; ...; w_K v_K] +
  sum_k w_k d_k`` (:meth:`Ensemble.merged`): :meth:`Ensemble.logit` and predict.py's
  one-hot path (``nn_core/modeldir.py: Predictor.proba_inputs``) score it in one pass.

``nn_core/modeldir.py`` writes and reads it; every exporter computes the same sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .activations import sigmoid
from .calibration import Calibration, fit_calibration, fit_logistic
from .metrics import roc_auc
from .network import MAX_WIDTH, MLP

#: The blend weights ``alpha`` of the logistic regression that :func:`blend` tries.
BLEND_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
#: ``--fuse`` values: no fusion, a blend on a grid, a stacked logistic regression.
FUSIONS = ("none", "blend", "stack")
#: Most networks of a seed ensemble (``--ensemble``).
MAX_ENSEMBLE = 32


def embed_inputs(net: MLP, cols: np.ndarray, n_inputs: int) -> MLP:
    """The network of ``n_inputs`` inputs that computes ``net`` on the columns ``cols``.

    ``net`` was trained on ``X[:, cols]`` (a member that sees a subset of the columns of
    the matrix ``X`` (n, ``n_inputs``) its ensemble scores). The copy's first-layer weight
    matrix ``W'`` (``n_inputs``, h_1) holds ``net``'s ``W`` (len(cols), h_1) in the rows
    ``cols`` and zeros elsewhere; every other weight and bias is ``net``'s:

        ``X W' = X[:, cols] W``,  so  ``net'(X) = net(X[:, cols])``

    for every finite ``X`` (up to the rounding of a sum taken in another order). The
    ensemble, its files and every exporter then see networks of one width.

    Parameters
    ----------
    net : MLP
        Trained on ``X[:, cols]``; ``net.n_inputs == len(cols)``.
    cols : ndarray of int, shape (net.n_inputs,)
        Distinct column indices in ``[0, n_inputs)``.
    n_inputs : int
        The width of ``X``.

    Returns
    -------
    MLP
        Of ``n_inputs`` inputs, with ``net``'s architecture, dtype, seed and backend.
    """
    cols = np.asarray(cols)
    if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer) or len(cols) != net.n_inputs:
        raise ValueError(f"cols must be {net.n_inputs} integer column indices (the network's "
                         f"inputs), got shape {cols.shape} of {cols.dtype}")
    if len(cols) and (cols.min() < 0 or cols.max() >= n_inputs
                      or len(np.unique(cols)) != len(cols)):
        raise ValueError(f"cols must be distinct indices in [0, {n_inputs})")
    wide = MLP(n_inputs, hidden=net.hidden, activation=net.activation, output=net.output,
               dtype=net.dtype, seed=net.seed, backend=net.backend, dropout=net.dropout)
    (W, b), *rest = net.get_weights()
    W_wide = np.zeros((n_inputs, W.shape[1]), dtype=W.dtype)
    W_wide[cols] = W
    wide.set_weights([(W_wide, b), *rest])
    return wide


def side_by_side(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Several first layers ``(W_k (d, h_k), b_k (h_k,))`` of the same inputs as one:
    ``W = [W_1 ... W_K]`` (d, sum h_k), ``b = [b_1 ... b_K]``, so ``X W + b`` holds every
    member's pre-activations (:meth:`Ensemble.merged`; the exporters' combined models)."""
    return (np.concatenate([W for W, _ in layers], axis=1),
            np.concatenate([b for _, b in layers]))


def flush_subnormal(theta: np.ndarray) -> None:
    """Set the subnormal entries of ``theta`` (``0 < |t| < tiny``, the dtype's smallest
    normal number) to 0, in place.

    Weight decay shrinks the weights of units that no longer learn geometrically, down to
    subnormal numbers (thousands of the first-layer weights of a trained 5-network
    ensemble), and a CPU multiplies a subnormal operand many times slower: a product with
    them took 4-5x as long as with the same weights flushed (1.12 s against 0.23 s on 300,000
    rows, 2-vCPU Xeon, float32). A term ``x w`` with ``|w| < tiny`` moves a sum ``Z`` by
    less than half its last place whenever ``|Z| >= 2^p tiny sum |x|`` (``p``: the
    precision's bits): below rounding for every result that is not itself near ``tiny``.
    Only for weights that predict (a copy), never for weights that train or are saved.
    """
    theta[np.abs(theta) < np.finfo(theta.dtype).tiny] = 0


def member_seed(seed: int, k: int) -> int:
    """The seed of ensemble member ``k`` trained on split seed ``seed`` (< 2**32):
    ``seed + k 2**32``, so member 0 is the single network of that seed and no two
    (split seed, member) pairs share a seed."""
    return seed + (k << 32)


class Ensemble:
    """Members ``(MLP, weight)``, a logit bias and a calibration, scoring feature matrices.

    Parameters
    ----------
    members : sequence of (MLP, float)
        At least one; the same ``n_inputs`` and ``dtype``, sigmoid outputs; finite weights.
    bias : float
        ``c``, added to the weighted sum of logits.
    calibration : Platt or Isotonic, optional
    """

    def __init__(self, members: Sequence[tuple[MLP, float]], bias: float = 0.0,
                 calibration: Calibration | None = None) -> None:
        members = [(m, float(w)) for m, w in members]
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0][0]
        for k, (m, w) in enumerate(members):
            if not isinstance(m, MLP):
                raise TypeError(f"member {k} must be an nn_core.MLP, got {type(m).__name__}")
            if m.output != "sigmoid" and (len(members) > 1 or w != 1.0 or bias != 0.0
                                          or calibration is not None):
                raise ValueError(f"member {k}: a combined model (several members, a weight, "
                                 "a bias or a calibration) needs the sigmoid output")
            if (m.n_inputs, m.dtype) != (first.n_inputs, first.dtype):
                raise ValueError(f"member {k} takes {m.n_inputs} {m.dtype} inputs, member 0 "
                                 f"{first.n_inputs} {first.dtype}")
            if not np.isfinite(w):
                raise ValueError(f"member {k}: weight must be finite, got {w}")
        if not np.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        self.members = members
        self.bias = float(bias)
        self.calibration = calibration
        self._twins: list[MLP] | None = None
        self._merged: MLP | None = None
        self._merged_built = False

    @property
    def plain(self) -> bool:
        """One member of weight 1, no bias, no calibration: the network's own output."""
        return (len(self.members) == 1 and self.members[0][1] == 1.0 and self.bias == 0.0
                and self.calibration is None)

    def _logit_networks(self) -> list[MLP]:
        """Per member a twin with the identity output and the same weights: its
        ``predict_proba`` is the member's logit ``z_k`` (computed by the same backend).
        Built on first use, from the weights the members hold then (a loaded or finished
        model's: nothing trains a member after it joins an ensemble)."""
        if self._twins is None:
            self._twins = []
            for m, _ in self.members:
                twin = MLP(m.n_inputs, hidden=m.hidden, activation=m.activation,
                           output="identity", dtype=m.dtype, seed=m.seed, backend=m.backend,
                           dropout=m.dropout)
                twin.set_weights(m.get_weights())
                self._twins.append(twin)
        return self._twins

    def member_logits(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``Z`` (n, K) float64: column ``k`` is member ``k``'s logit ``z_k(X)``."""
        return np.column_stack([np.asarray(t.predict_proba(X, threads=threads), np.float64)
                                for t in self._logit_networks()])

    def merged(self) -> MLP | None:
        """One network of the identity output whose logit is the members' weighted sum,
        ``z(X) = c + merged(X)``; None when the members are not all of one hidden layer,
        one activation and one backend (or the union is wider than an MLP may be).

        Member ``k`` is ``z_k(X) = f(X W_k + b_k) v_k + d_k`` with ``W_k`` (d, h_k),
        ``b_k`` (h_k,), ``v_k`` (h_k, 1) and ``d_k``, so the weighted sum is one network
        of ``H = sum_k h_k`` hidden units:

            ``sum_k w_k z_k(X) = f(X W + b) v + sum_k w_k d_k``,
            ``W = [W_1 ... W_K]`` (d, H),  ``b = [b_1 ... b_K]`` (H,),
            ``v = [w_1 v_1; ...; w_K v_K]`` (H, 1)

        (its output bias ``sum_k w_k d_k``; ``v`` and that bias rounded to the members'
        dtype once; a subnormal weight, ``0 < |w| < tiny`` of the dtype, is 0 in it,
        :func:`flush_subnormal`). It equals the per-member sum up to the rounding of sums
        taken in another order, and costs one pass over ``X`` instead of ``K`` (for one-hot
        inputs, ``nn_core/onehot.py``, one gathered first layer). A member with no hidden layer
        (a logistic regression) or with several (whose union would be block-diagonal)
        leaves the ensemble to :meth:`member_logits`. Built on first use, like
        :meth:`_logit_networks`.
        """
        if not self._merged_built:
            self._merged, self._merged_built = self._merge(), True
        return self._merged

    def _merge(self) -> MLP | None:
        nets = [m for m, _ in self.members]
        first = nets[0]
        H = sum(m.hidden[0] for m in nets if len(m.hidden) == 1)
        if (any(len(m.hidden) != 1 or (m.activation, m.backend)
                != (first.activation, first.backend) for m in nets) or H > MAX_WIDTH):
            return None
        weights = [(m.get_weights(), w) for m, w in self.members]
        W, b = side_by_side([Wb[0] for Wb, _ in weights])
        v = np.concatenate([w * np.asarray(Wb[1][0], np.float64) for Wb, w in weights])
        d = sum(w * np.asarray(Wb[1][1], np.float64) for Wb, w in weights)
        try:
            net = MLP(first.n_inputs, hidden=(H,), activation=first.activation,
                      output="identity", dtype=first.dtype, seed=first.seed,
                      backend=first.backend)
        except ValueError:  # more parameters than an MLP may have
            return None
        net.set_weights([(W, b), (v.astype(first.dtype), d.astype(first.dtype))])
        flush_subnormal(net.theta)
        return net

    def logit(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``z = c + sum_k w_k z_k(X)``, (n,) float64 (by :meth:`merged` where there is
        one network of them all)."""
        merged = self.merged()
        if merged is not None:
            return self.bias + np.asarray(merged.predict_proba(X, threads=threads), np.float64)
        w = np.array([w for _, w in self.members])
        return self.bias + self.member_logits(X, threads) @ w

    def proba_of_logit(self, z: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """``calibration(z)`` (``sigma(z)`` when uncalibrated or ``calibrated=False``) of
        combined logits ``z`` (n,) float64."""
        return self.calibration(z) if calibrated and self.calibration is not None \
            else sigmoid(z)

    def predict_proba(self, X: np.ndarray, threads: int | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """``calibration(z)`` (``sigma(z)`` when uncalibrated or ``calibrated=False``), (n,)
        float64, of features ``X`` (n, n_inputs)."""
        if self.plain:
            return np.asarray(self.members[0][0].predict_proba(X, threads=threads), np.float64)
        return self.proba_of_logit(self.logit(X, threads), calibrated)


def blend(z_net: np.ndarray, z_lr: np.ndarray, y: np.ndarray) -> float:
    """The weight ``alpha`` of :data:`BLEND_GRID` whose ``(1 - alpha) z_net + alpha z_lr``
    has the highest ROC-AUC on ``y`` (dev); the smallest such ``alpha`` on ties.

    Parameters
    ----------
    z_net, z_lr : ndarray, shape (n,)
        Dev logits of the network (the ensemble's mean) and of the logistic regression.
    y : ndarray, shape (n,)
    """
    scores = [roc_auc(y, (1 - a) * z_net + a * z_lr) for a in BLEND_GRID]
    return float(BLEND_GRID[int(np.argmax(scores))])


def stack(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """A logistic regression on the members' logits ``Z`` (n, K) against ``y`` (dev):
    ``(w, c)`` minimising the log-loss of ``sigma(Z w + c)``
    (``nn_core/calibration.py: fit_logistic``)."""
    return fit_logistic(Z, y)


def combine(networks: Sequence[MLP], lr: MLP | None, X_dev: np.ndarray, y_dev: np.ndarray,
            fuse: str = "none", calibrate: str = "none",
            threads: int | None = None) -> tuple[Ensemble, dict]:
    """The combined model of ``networks`` (a seed ensemble) and, with ``fuse``, the logistic
    regression ``lr``, then calibrated; every choice made on dev.

    * ``fuse="none"``: ``z = (1/K) sum_k z_k`` (``lr`` unused);
    * ``"blend"``: ``z = (1 - alpha)/K sum_k z_k + alpha z_LR``, ``alpha`` by :func:`blend`
      (a member whose weight is 0 is left out);
    * ``"stack"``: ``z = c + sum_k w_k z_k + w_LR z_LR`` by :func:`stack`.

    ``calibrate`` (``nn_core/calibration.py: CALIBRATIONS``) is then fitted on the combined
    dev logit.

    Returns
    -------
    model : Ensemble
    info : dict
        What was chosen: ``members`` (K), ``fuse``, ``blend_alpha`` or the stacked
        ``weights`` and ``bias``, ``calibration`` (with Platt's ``a``, ``b``, or the number
        of isotonic breakpoints).
    """
    if fuse not in FUSIONS:
        raise ValueError(f"fuse must be one of {list(FUSIONS)}, got {fuse!r}")
    if fuse != "none" and lr is None:
        raise ValueError(f"fuse={fuse!r} needs the logistic regression")
    K = len(networks)
    members = [(m, 1.0 / K) for m in networks]
    info: dict = {"members": K, "fuse": fuse}
    bias = 0.0
    if fuse != "none":
        Z = Ensemble([*members, (lr, 1.0)]).member_logits(X_dev, threads)
        if fuse == "blend":
            alpha = blend(Z[:, :K].mean(axis=1), Z[:, K], y_dev)
            members = [(m, (1 - alpha) / K) for m in networks] + [(lr, alpha)]
            members = [(m, w) for m, w in members if w != 0]
            info["blend_alpha"] = alpha
        else:
            w, bias = stack(Z, y_dev)
            members = list(zip([*networks, lr], w.tolist(), strict=True))
            info["weights"], info["bias"] = w.tolist(), bias
    model = Ensemble(members, bias)
    model.calibration = fit_calibration(calibrate, model.logit(X_dev, threads), y_dev)
    info["calibration"] = calibrate
    if model.calibration is not None:
        info.update({"a": model.calibration.a, "b": model.calibration.b}
                    if calibrate == "platt" else {"breakpoints": len(model.calibration.x)})
    return model, info
