"""Test helpers: two backends against each other, and a gradient check that explains itself.

Every backend pair (numpy against numba, numpy against cupy) is checked by
:func:`assert_backends_agree`: the forward pass, the loss, every gradient,
and the weights after one epoch of Adam.

Agreement is measured per array as a normwise relative error,
``max|a - b| / max|a|``, so that entries that are tiny by chance do not
dominate. Tolerances:

* float64: ``1e-10``. Both sides compute the same formulas; only the order
  of floating-point operations differs (BLAS blocking, fastmath), which
  moves results by a few units in the last place, about ``1e-16``.
* float32: ``3e-5``. Rounding is now ``6e-8`` per operation; sums of
  products and one epoch of Adam steps (which divide by ``sqrt(v)`` and so
  amplify tiny differences in small gradients) gave at most ``2.5e-6`` over
  every activation, output and dropout setting in ``tests/nn_core/test_backends.py``;
  the bound leaves a margin of about 10x.

A gradient check in a test goes through :func:`assert_gradients_match`, so that
a failure prints the located report (which layer, ``W`` or ``b``, which entry)
rather than one number.
"""

from __future__ import annotations

import numpy as np

from .gradcheck import GradcheckReport, check_gradients, gradcheck
from .network import MLP

TOLERANCES = {"float64": 1e-10, "float32": 3e-5}

#: Keyword arguments of :func:`compare_backends` that every backend pair is
#: checked under, beyond the defaults: depths, dropout, a batch size that
#: does not divide the data, every optimizer, weight decay and the schedules.
OPTION_CASES = [
    {"hidden": ()},
    {"hidden": (9,)},
    {"hidden": (5, 4, 3)},
    {"dropout": 0.3},
    {"hidden": (5, 4, 3), "dropout": 0.3},
    {"batch_size": 7},
    {"fit_kwargs": {"optimizer": "sgd"}},
    {"fit_kwargs": {"optimizer": "momentum"}},
    {"fit_kwargs": {"optimizer": "momentum", "nesterov": True}},
    {"fit_kwargs": {"weight_decay": 0.05}},
    {"fit_kwargs": {"epochs": 3, "schedule": "cosine"}},
    {"fit_kwargs": {"epochs": 3, "schedule": "step", "step_size": 1}},
]


def relative_error(a, b) -> float:
    """Normwise relative difference ``max|a - b| / max|a|`` (0 when both are all zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = np.abs(a).max(initial=0.0)
    diff = np.abs(a - b).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def compare_backends(
    backend_a: str,
    backend_b: str,
    dtype: str = "float64",
    n_inputs: int = 7,
    hidden: tuple = (6, 5),
    activation: str = "relu",
    output: str = "sigmoid",
    n: int = 150,
    batch_size: int = 32,
    dropout: float = 0.0,
    seed: int = 0,
    fit_kwargs: dict | None = None,
) -> dict[str, float]:
    """Run the same network on two backends; return the relative error of each quantity.

    Both networks start from the same weights (same seed) and see the same
    synthetic data, sample weights, positive-class weight (sigmoid output)
    and L2 penalty.

    Returns
    -------
    dict
        ``{"predict": e, "predict_rows": e, "loss": e, "dW0": e, "db0": e, ...,
        "theta_after_epoch": e}``.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_inputs))
    if output == "sigmoid":
        y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0.3).astype(np.float64)
    else:
        y = np.tanh(X[:, 0]) + 0.1 * rng.normal(size=n)
    sample_weight = rng.uniform(0.5, 1.5, size=n)
    kw = {"sample_weight": sample_weight, "l2": 1e-3}
    if output == "sigmoid":
        kw["pos_weight"] = 2.0
    models = [
        MLP(n_inputs, hidden, activation, output, dtype, seed, backend, dropout)
        for backend in (backend_a, backend_b)
    ]
    errors = {"predict": relative_error(*(m.predict_proba(X) for m in models))}
    # Online scoring: rows one at a time and a few together, in the model's
    # dtype (the numba backend computes these without BLAS, on another path).
    few = np.ascontiguousarray(X[:5], dtype=dtype)
    errors["predict_rows"] = relative_error(
        *(np.concatenate([*(m.predict_proba(row[None]) for row in few), m.predict_proba(few)])
          for m in models)
    )
    (loss_a, grads_a), (loss_b, grads_b) = (m.loss_and_grad(X, y, **kw) for m in models)
    errors["loss"] = relative_error(loss_a, loss_b)
    for l, ((dW_a, db_a), (dW_b, db_b)) in enumerate(zip(grads_a, grads_b, strict=False)):
        errors[f"dW{l}"] = relative_error(dW_a, dW_b)
        errors[f"db{l}"] = relative_error(db_a, db_b)
    fit = {"epochs": 1, "batch_size": batch_size, "optimizer": "adam", "lr": 1e-2, **kw}
    fit.update(fit_kwargs or {})
    for m in models:
        m.fit(X, y, **fit)
    errors["theta_after_epoch"] = relative_error(models[0].theta, models[1].theta)
    return errors


def assert_backends_agree(backend_a: str, backend_b: str, dtype: str = "float64", **kw) -> dict:
    """Raise ``AssertionError`` naming every quantity whose error exceeds ``TOLERANCES[dtype]``.

    Keyword arguments go to :func:`compare_backends`. Returns the errors.
    """
    errors = compare_backends(backend_a, backend_b, dtype, **kw)
    tol = TOLERANCES[dtype]
    bad = {k: e for k, e in errors.items() if not e <= tol}
    if bad:
        raise AssertionError(
            f"{backend_a} and {backend_b} disagree in {dtype} beyond {tol:g}: {bad}"
        )
    return errors


def assert_gradients_match(check, *args, **kwargs) -> GradcheckReport:
    """Raise ``AssertionError`` with the gradient check's table unless the check passes.

    Parameters
    ----------
    check : GradcheckReport, nn_core.MLP or callable
        A report already computed (no further arguments); a model, checked as
        ``gradcheck(check, *args, **kwargs)``; or a scalar function ``f``,
        checked as ``check_gradients(check, *args, **kwargs)`` (``grad_f, x, ...``).

    Returns
    -------
    GradcheckReport
        The report, when it passes.

    Examples
    --------
    >>> assert_gradients_match(model, X, y, l2=0.3)  # doctest: +SKIP
    >>> assert_gradients_match(lambda z: (z**3).sum(), lambda z: 3 * z**2, [0.5, -1.0]).ok
    True
    """
    if isinstance(check, GradcheckReport):
        if args or kwargs:
            raise TypeError("a GradcheckReport takes no further arguments")
        report = check
    elif callable(check):
        report = check_gradients(check, *args, **kwargs)
    else:
        report = gradcheck(check, *args, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradients do not match\n{report}")
    return report
