"""Calibration maths: the logistic fit, pool-adjacent-violators, and their stored form."""

import numpy as np
import pytest

from nn_core.calibration import (
    Isotonic,
    Platt,
    calibration_from_dict,
    fit_calibration,
    fit_logistic,
    isotonic_fit,
)
from nn_core.losses import bce_with_logits


def _scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.6 * z - 1.0)))).astype(np.int8)
    return z, y


def test_fit_logistic_is_a_stationary_point_of_the_log_loss():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 3))
    y = (rng.random(300) < 1 / (1 + np.exp(-(Z @ [1.0, -2.0, 0.5] + 0.3)))).astype(float)
    w, c = fit_logistic(Z, y)
    p = 1 / (1 + np.exp(-(Z @ w + c)))
    # the gradient A^T (p - y) / n vanishes at the optimum
    assert np.max(np.abs(np.column_stack([Z, np.ones(300)]).T @ (p - y) / 300)) < 1e-8
    loss = np.mean(bce_with_logits(Z @ w + c, y))
    for delta in np.eye(4) * 1e-3:  # and every small move increases the loss
        moved = np.mean(bce_with_logits(Z @ (w + delta[:3]) + c + delta[3], y))
        assert moved > loss


def test_platt_matches_an_unpenalised_sklearn_logistic_regression():
    linear = pytest.importorskip("sklearn.linear_model")
    z, y = _scores()
    platt = Platt.fit(z, y)
    ref = linear.LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(z[:, None], y)
    assert platt.a == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert platt.b == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-6)
    assert np.allclose(platt(z), ref.predict_proba(z[:, None])[:, 1], atol=1e-7)


def test_platt_recovers_the_scale_of_an_overconfident_logit():
    z, y = _scores(n=20_000, seed=2)  # true P(y=1 | z) = sigma(0.6 z - 1)
    platt = Platt.fit(z, y)
    assert platt.a == pytest.approx(0.6, abs=0.05) and platt.b == pytest.approx(-1.0, abs=0.05)


def test_pav_by_hand():
    # (x, y): 1:0, 2:1, 3:0, 4:1 -> the violation at 2, 3 pools to 0.5
    x, v = isotonic_fit(np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 0, 1]))
    assert x.tolist() == [1, 2, 3, 4] and v.tolist() == [0, 0.5, 0.5, 1]
    # ties in x are one point of the mean value; a constant run keeps its two ends only
    x, v = isotonic_fit(np.array([0.1, 0.1, 0.2, 0.3, 0.4]), np.array([1.0, 0, 0, 0, 1]))
    assert x.tolist() == [0.1, 0.3, 0.4] and v.tolist() == [0.25, 0.25, 1]


def test_isotonic_matches_sklearn():
    isotonic = pytest.importorskip("sklearn.isotonic")
    z, y = _scores(n=1000, seed=3)
    z = np.round(z, 1)  # ties
    cal = Isotonic.fit(z, y)
    p = 1 / (1 + np.exp(-z))
    ref = isotonic.IsotonicRegression(out_of_bounds="clip").fit(p, y)
    grid = 1 / (1 + np.exp(-np.linspace(-8, 8, 2001)))  # between and beyond the breakpoints
    assert np.allclose(cal(np.linspace(-8, 8, 2001)), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(cal.y) >= 0) and np.all(np.diff(cal.x) > 0)


def test_fit_calibration_none_and_unknown():
    z, y = _scores()
    assert fit_calibration("none", z, y) is None
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_calibration("beta", z, y)


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_round_trip_through_a_dict(kind):
    z, y = _scores()
    cal = fit_calibration(kind, z, y)
    back = calibration_from_dict(cal.to_dict(), "here")
    assert np.array_equal(back(z), cal(z))


@pytest.mark.parametrize("doc, message", [
    ([], "must be an object with kind"),
    ({"kind": "beta"}, "must be an object with kind"),
    ({"kind": "platt", "a": 1.0}, "exactly the keys"),
    ({"kind": "platt", "a": 1.0, "b": True}, "finite numbers"),
    ({"kind": "platt", "a": 1.0, "b": 0, "c": 2}, "exactly the keys"),
    ({"kind": "isotonic", "x": [], "y": []}, "lists of equal length"),
    ({"kind": "isotonic", "x": [0.1, 0.2], "y": [0.5]}, "lists of equal length"),
    ({"kind": "isotonic", "x": [0.2, 0.1], "y": [0.1, 0.5]}, "strictly increasing"),
    ({"kind": "isotonic", "x": [0.1, 0.2], "y": [0.5, 0.1]}, "non-decreasing"),
    ({"kind": "isotonic", "x": [0.1, 1.5], "y": [0.1, 0.5]}, r"in \[0, 1\]"),
    ({"kind": "isotonic", "x": [0.1, "0.2"], "y": [0.1, 0.5]}, "finite numbers"),
])
def test_malformed_calibrations_are_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        calibration_from_dict(doc, "model.json: 'calibration'")
