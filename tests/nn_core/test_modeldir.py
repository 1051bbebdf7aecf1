"""Model directories: exact round trip, and refusal of anything damaged or unsafe."""

import hashlib
import io
import json
import pickle

import numpy as np
import pytest

from nn_core import MLP, ModelFileError, load_model, save_model
from nn_core.io import atomic_write


@pytest.fixture
def saved(tmp_path):
    m = MLP(5, (4, 3), activation="tanh", dtype="float32", seed=3)
    rng = np.random.default_rng(0)
    m.fit(rng.normal(size=(40, 5)), rng.integers(0, 2, 40), epochs=2)
    d = tmp_path / "model"
    save_model(d, m)
    return m, d


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype):
    m = MLP(6, (5,), activation="leaky_relu", output="identity", dtype=dtype, seed=4)
    m.theta += np.linspace(-1, 1, m.n_params).astype(dtype)
    save_model(tmp_path / "m", m)
    m2 = load_model(tmp_path / "m").network
    assert (m2.n_inputs, m2.hidden, m2.activation, m2.output, m2.dtype) == (
        6,
        (5,),
        "leaky_relu",
        "identity",
        dtype,
    )
    assert m2.theta.dtype == m.theta.dtype
    assert np.array_equal(m2.theta, m.theta)
    # a loaded model keeps theta on a cache-line boundary, as a new one has it
    assert m.theta.ctypes.data % 64 == 0 and m2.theta.ctypes.data % 64 == 0
    X = np.random.default_rng(1).normal(size=(10, 6))
    assert np.array_equal(m2.predict_proba(X), m.predict_proba(X))


def test_model_json_records_architecture_and_hash(saved):
    _m, d = saved
    meta = json.loads((d / "model.json").read_text())
    assert meta["format_version"] == 1
    assert meta["hidden"] == [4, 3] and meta["dtype"] == "float32"
    assert meta["weights_sha256"] == hashlib.sha256((d / "weights.npz").read_bytes()).hexdigest()


def test_no_temporary_files_left(saved):
    _, d = saved
    assert sorted(p.name for p in d.iterdir()) == ["model.json", "weights.npz"]


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope")


def test_truncated_weights_are_refused(saved):
    _, d = saved
    blob = (d / "weights.npz").read_bytes()
    (d / "weights.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFileError, match=r"weights\.npz.*SHA-256"):
        load_model(d)


def test_tampered_weights_are_refused(saved):
    _, d = saved
    blob = bytearray((d / "weights.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (d / "weights.npz").write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_model(d)


def _rewrite_weights(d, arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    (d / "weights.npz").write_bytes(blob)
    meta = json.loads((d / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # an attacker can fix the hash
    (d / "model.json").write_text(json.dumps(meta))


def test_pickled_weights_are_refused_even_with_a_matching_hash(saved):
    m, d = saved
    arrays = {f"{p}{l}": a for l, (W, b) in enumerate(m.params) for p, a in (("W", W), ("b", b))}
    arrays["W0"] = np.array([object()], dtype=object)
    _rewrite_weights(d, arrays)
    with pytest.raises(ModelFileError, match="refused"):
        load_model(d)


def test_a_pickle_file_as_weights_is_refused(saved):
    _, d = saved
    blob = pickle.dumps({"W0": np.zeros((5, 4))})
    (d / "weights.npz").write_bytes(blob)
    meta = json.loads((d / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"weights\.npz"):
        load_model(d)


def test_wrong_shapes_are_refused(saved):
    m, d = saved
    arrays = {f"{p}{l}": a for l, (W, b) in enumerate(m.params) for p, a in (("W", W), ("b", b))}
    arrays["W1"] = np.zeros((3, 4), dtype=np.float32)
    _rewrite_weights(d, arrays)
    with pytest.raises(ModelFileError, match="layer 1 has shapes"):
        load_model(d)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_versions_are_refused(saved, version):
    _, d = saved
    meta = json.loads((d / "model.json").read_text())
    meta["format_version"] = version
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="format_version"):
        load_model(d)


def test_broken_json_is_refused(saved):
    _, d = saved
    (d / "model.json").write_text('{"format": "purchase-propensity-mlp", ')
    with pytest.raises(ModelFileError, match=r"model\.json: not valid JSON"):
        load_model(d)


def test_another_format_is_refused(saved):
    _, d = saved
    (d / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="not a purchase-propensity-mlp file"):
        load_model(d)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write(p, "old")

    with pytest.raises(TypeError):
        atomic_write(p, 12345)  # not bytes or str: fails before anything is replaced
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_model_files_get_ordinary_permissions(saved):
    import os

    _, d = saved
    mask = os.umask(0)
    os.umask(mask)
    for name in ("model.json", "weights.npz"):
        assert (d / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_threshold_round_trip_and_old_directories_without_it(saved, tmp_path):
    m, d = saved
    assert load_model(d).threshold is None  # saved without one, as before it was stored
    save_model(tmp_path / "t", m, threshold=0.375)
    assert json.loads((tmp_path / "t" / "model.json").read_text())["threshold"] == 0.375
    assert load_model(tmp_path / "t").threshold == 0.375
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        save_model(tmp_path / "u", m, threshold=1.5)
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("value, message", [
    ("0.5", "must be a number"), (True, "must be a number"), (-0.1, r"must be in \[0, 1\]"),
    (2, r"must be in \[0, 1\]"), ([0.5], "must be a number"),
])
def test_a_malformed_threshold_is_refused(saved, value, message):
    _, d = saved
    meta = json.loads((d / "model.json").read_text())
    meta["threshold"] = value
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=f"model.json: 'threshold' {message}"):
        load_model(d)


def test_an_identity_output_takes_any_finite_threshold(tmp_path):
    m = MLP(3, (2,), output="identity", seed=1)
    save_model(tmp_path / "m", m, threshold=-2.5)
    assert load_model(tmp_path / "m").threshold == -2.5
