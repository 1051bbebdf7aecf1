"""Ensembles: the combined logit, the choice of a fusion on dev, and model directories that
hold several networks, a bias and a calibration (round trip, old directories, strict checks)."""

import json

import numpy as np
import pytest

from nn_core import MLP, ModelFileError, load_model, save_model
from nn_core.calibration import Isotonic, Platt
from nn_core.ensemble import BLEND_GRID, Ensemble, blend, stack
from nn_core.metrics import roc_auc


def _net(hidden, seed, n_inputs=5):
    m = MLP(n_inputs, hidden, dtype="float64", seed=seed)
    m.theta += np.random.default_rng(seed).normal(scale=0.3, size=m.n_params)
    return m


@pytest.fixture
def X():
    return np.random.default_rng(9).normal(size=(30, 5))


def _logit(m, X):
    H = X
    for l, (W, b) in enumerate(m.params):
        Z = H @ W + b
        H = np.maximum(Z, 0) if l < len(m.params) - 1 else Z
    return Z[:, 0]


def test_the_combined_logit_is_the_weighted_sum(X):
    a, b, lr = _net((4,), 1), _net((3, 2), 2), _net((), 3)
    e = Ensemble([(a, 0.5), (b, 0.25), (lr, -1.5)], bias=0.75)
    expected = 0.75 + 0.5 * _logit(a, X) + 0.25 * _logit(b, X) - 1.5 * _logit(lr, X)
    assert np.allclose(e.logit(X), expected, atol=1e-12)
    assert np.allclose(e.predict_proba(X), 1 / (1 + np.exp(-expected)), atol=1e-12)
    cal = Platt(2.0, -0.5)
    e.calibration = cal
    assert np.allclose(e.predict_proba(X), 1 / (1 + np.exp(-(2 * expected - 0.5))), atol=1e-12)
    assert np.allclose(e.predict_proba(X, calibrated=False), 1 / (1 + np.exp(-expected)),
                       atol=1e-12)


def test_a_plain_ensemble_is_the_network_itself(X):
    a = _net((4,), 1)
    e = Ensemble([(a, 1.0)])
    assert e.plain and np.array_equal(e.predict_proba(X), a.predict_proba(X))
    assert not Ensemble([(a, 1.0)], bias=0.1).plain


def test_members_must_agree():
    with pytest.raises(ValueError, match="member 1 takes 4"):
        Ensemble([(_net((2,), 0), 0.5), (_net((2,), 1, n_inputs=4), 0.5)])
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_blend_picks_the_dev_best_weight_and_the_smallest_on_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    signal = y + rng.normal(size=500)
    z_lr = signal  # informative
    z_net = rng.normal(size=500)  # noise
    assert blend(z_net, z_lr, y) == 1.0
    assert blend(z_lr, z_net, y) == 0.0
    assert blend(z_lr, z_lr, y) == 0.0  # every weight ties
    # two equally noisy views: their average beats either, and the chosen weight is the best
    z1, z2 = signal + rng.normal(size=500), signal + rng.normal(size=500)
    alpha = blend(z1, z2, y)
    assert 0 < alpha < 1
    assert roc_auc(y, (1 - alpha) * z1 + alpha * z2) == max(
        roc_auc(y, (1 - a) * z1 + a * z2) for a in BLEND_GRID)


def test_stack_weights_the_informative_member():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    Z = np.column_stack([2 * y - 1 + rng.normal(size=2000), rng.normal(size=2000)])
    w, _ = stack(Z, y)
    assert w[0] > 1 and abs(w[1]) < 0.2


@pytest.mark.parametrize("calibration", [None, Platt(1.5, -0.2),
                                         Isotonic([0.1, 0.5, 0.9], [0.0, 0.3, 1.0])])
def test_round_trip_of_an_ensemble(tmp_path, X, calibration):
    members = [(_net((4,), 1), 0.4), (_net((3, 2), 2), 0.4), (_net((), 3), 0.2)]
    e = Ensemble(members, bias=-0.3, calibration=calibration)
    d = save_model(tmp_path / "m", e, threshold=0.4)
    meta = json.loads((d / "model.json").read_text())
    assert meta["format_version"] == 2 and meta["hidden"] == [4]
    assert [m["weight"] for m in meta["members"]] == [0.4, 0.4, 0.2]
    with np.load(d / "weights.npz") as z:  # member 0 keeps the single network's names
        assert {"W0", "b0", "W1", "b1", "m1/W2", "m2/W0", "m2/b0"} <= set(z.files)
    p = load_model(d)
    assert len(p.members) == 3 and p.logit_bias == -0.3 and p.threshold == 0.4
    assert p.network.hidden == (4,) and p.members[2][0].hidden == ()
    assert np.array_equal(p.logit(X), e.logit(X))
    assert np.array_equal(p.proba(X), e.predict_proba(X))
    assert (p.calibration is None) == (calibration is None)


def test_a_plain_model_stays_version_1(tmp_path, X):
    a = _net((4,), 1)
    d1 = save_model(tmp_path / "a", a)
    d2 = save_model(tmp_path / "b", Ensemble([(a, 1.0)]))
    assert json.loads((d1 / "model.json").read_text())["format_version"] == 1
    for name in ("model.json", "weights.npz"):
        assert (d1 / name).read_bytes() == (d2 / name).read_bytes()
    p = load_model(d1)
    assert p.members == [(p.network, 1.0)] and p.logit_bias == 0 and p.calibration is None


@pytest.fixture
def ens_dir(tmp_path):
    e = Ensemble([(_net((4,), 1), 0.5), (_net((2,), 2), 0.5)], calibration=Platt(1.0, 0.0))
    return save_model(tmp_path / "e", e)


def _edit(d, **changes):
    meta = json.loads((d / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    (d / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 1}, "'members' needs format_version 2"),
    ({"members": None}, "'members' must be a list"),
    ({"members": []}, "'members' must be a list"),
    ({"logit_bias": None}, "'logit_bias' must be a finite number"),
    ({"logit_bias": "0"}, "'logit_bias' must be a finite number"),
    ({"calibration": {"kind": "platt", "a": 1}}, "'calibration': a platt calibration"),
])
def test_malformed_combinations_are_refused(ens_dir, changes, message):
    _edit(ens_dir, **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model(ens_dir)


@pytest.mark.parametrize("member, message", [
    ({"weight": True}, r"'members'\[1\]: 'weight' must be a finite number"),
    ({"hidden": [3]}, r"member 1 layer 0 has shapes W\(5, 2\)"),
    ({"activation": "nope"}, r"'members'\[1\]: 'activation' must be one of"),
    ({"extra": 1}, r"'members'\[1\] must be an object with exactly the keys"),
])
def test_malformed_members_are_refused(ens_dir, member, message):
    meta = json.loads((ens_dir / "model.json").read_text())
    meta["members"][1].update(member)
    (ens_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=message):
        load_model(ens_dir)


def test_member_0_must_be_the_top_level_network(ens_dir):
    meta = json.loads((ens_dir / "model.json").read_text())
    meta["members"][0]["seed"] = 99
    (ens_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"'members'\[0\] must repeat"):
        load_model(ens_dir)


def test_the_hash_and_the_array_list_cover_every_member(ens_dir, tmp_path):
    blob = bytearray((ens_dir / "weights.npz").read_bytes())
    at = blob.find(b"m1/W0.npy")
    blob[at + 200] ^= 1  # a byte of member 1's arrays (after the entry name and .npy header)
    (ens_dir / "weights.npz").write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="SHA-256 does not match"):
        load_model(ens_dir)
    # member arrays under a version-1 model.json (one network) are refused, not ignored
    e = Ensemble([(_net((4,), 1), 0.5), (_net((2,), 2), 0.5)])
    d = save_model(tmp_path / "v1", e)
    meta = json.loads((d / "model.json").read_text())
    for key in ("members", "logit_bias"):
        del meta[key]
    meta["format_version"] = 1
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"unexpected arrays \['m1/W0', 'm1/W1', 'm1/b0', "
                       r"'m1/b1'\]"):
        load_model(d)


def test_a_combined_model_needs_the_sigmoid_output(tmp_path):
    identity = MLP(5, (3,), output="identity", seed=0)
    with pytest.raises(ValueError, match="needs the sigmoid output"):
        Ensemble([(identity, 2.0)])
    plain = Ensemble([(identity, 1.0)])  # one network as it is: any output
    assert plain.plain
    plain.calibration = Platt(1.0, 0.0)  # set afterwards: the writer refuses it
    with pytest.raises(ValueError, match="needs the sigmoid output"):
        save_model(tmp_path / "m", plain)
    assert not (tmp_path / "m").exists()
