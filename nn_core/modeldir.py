"""The model directory: the one place that writes and reads a trained model.

A model directory holds

* ``weights.npz``: the arrays ``W0, b0, W1, b1, ...`` (shapes as in ``MLP.params``), read
  back only with ``allow_pickle=False``;
* ``model.json``: format name and version, the architecture (``MLP.config``) and the
  SHA-256 of ``weights.npz``, written after the weights so that it never names weights
  that are not there yet;
* ``preprocess.json`` (optional): the fitted input transform as data
  (:class:`nn_core.preprocessing.Preprocessing`): column roles, log1p choices, means,
  standard deviations, categories, target and id column, and the data's source.

:func:`save_model` writes it (each file atomically), :func:`load_model` reads it back as
a :class:`Predictor`, which scores a raw table (``predict_proba(DataFrame)``). Every
reader of a model (``predict.py``, the exporter, the tests) goes through here; nothing
in a model directory is ever a pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .io import ModelFileError, atomic_write
from .network import MLP
from .preprocessing import Preprocessing

MODEL_FORMAT = "purchase-propensity-mlp"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_NPZ = "weights.npz"
PREPROCESS_JSON = "preprocess.json"


class Predictor:
    """A loaded model directory: the network and the fitted preprocessing, scoring raw rows.

    Attributes
    ----------
    network : nn_core.MLP
    preprocessing : nn_core.preprocessing.Preprocessing or None
        ``None`` for a directory saved without preprocessing (network inputs only).
    path : Path
    """

    def __init__(self, network: MLP, preprocessing: Preprocessing | None, path: Path) -> None:
        self.network = network
        self.preprocessing = preprocessing
        self.path = path

    def _preprocessing(self) -> Preprocessing:
        if self.preprocessing is None:
            raise ModelFileError(f"{self.path / PREPROCESS_JSON}: missing (the directory holds "
                                 "a network without its preprocessing)")
        return self.preprocessing

    def transform(self, frame: pd.DataFrame, first_row: int = 1) -> np.ndarray:
        """The network's inputs ``X`` (n, n_inputs) float64 of a raw table."""
        return self._preprocessing().transform(frame, first_row)

    def predict_proba(self, frame: pd.DataFrame, first_row: int = 1,
                      threads: int | None = None) -> np.ndarray:
        """Predicted probabilities (n,) float64 of the rows of a raw table.

        Parameters
        ----------
        frame : DataFrame
            Has every input column of the preprocessing (any order, extra columns
            ignored); cells as text or numbers.
        first_row : int
            1-based data-row number of ``frame``'s first row, for error messages.
        threads : int, optional
            Threads for the ``numba`` backend.

        Raises
        ------
        ValueError
            Naming row and column of a value the preprocessing cannot take.
        """
        X = self.transform(frame, first_row)
        return np.asarray(self.network.predict_proba(X, threads=threads), dtype=np.float64)


def save_model(dirpath: str | os.PathLike, network: MLP,
               preprocessing: Preprocessing | None = None) -> Path:
    """Write a model directory (created if needed); every file atomically.

    Parameters
    ----------
    dirpath : path-like
    network : MLP
    preprocessing : Preprocessing, optional
        The fitted input transform; written as ``preprocess.json``.

    Returns
    -------
    Path
        The directory.
    """
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {}
    for l, (W, b) in enumerate(network.params):
        arrays[f"W{l}"], arrays[f"b{l}"] = np.ascontiguousarray(W), np.ascontiguousarray(b)
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        **network.config(),
        "weights_file": WEIGHTS_NPZ,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    # allow_nan=False: a NaN or infinity would be written as bare NaN/Infinity, which
    # is not JSON and which load_model refuses; refuse it before writing any file.
    meta_text = _json_text(meta, d / MODEL_JSON)
    pre_text = (None if preprocessing is None
                else _json_text(preprocessing.to_dict(), d / PREPROCESS_JSON))
    # Weights first: model.json names their hash, so a reader never sees a
    # model.json that points at weights that are not yet there.
    atomic_write(d / WEIGHTS_NPZ, blob)
    atomic_write(d / MODEL_JSON, meta_text)
    if pre_text is not None:
        atomic_write(d / PREPROCESS_JSON, pre_text)
    return d


def _json_text(obj, path: Path) -> str:
    """``obj`` as indented JSON; ValueError naming ``path`` when it holds NaN or infinity."""
    try:
        return json.dumps(obj, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise ValueError(f"{path}: not written, it would hold a NaN or infinite "
                         "value") from None


def load_model(dirpath: str | os.PathLike, backend: str = "numba",
               require_preprocessing: bool = False) -> Predictor:
    """Read and verify a model directory written by :func:`save_model`.

    Parameters
    ----------
    dirpath : path-like
    backend : {"numba", "numpy", "cupy"}
        Backend of the loaded network.
    require_preprocessing : bool
        Refuse a directory without ``preprocess.json`` (to score raw rows, or to export).

    Returns
    -------
    Predictor

    Raises
    ------
    ModelFileError
        Naming the file and the problem: missing, not JSON, another format, a future
        version, a hash mismatch (truncated or tampered weights), a pickled or malformed
        array, shapes that do not fit the architecture, or a preprocessing whose feature
        count differs from the network's inputs.
    """
    d = Path(dirpath)
    network = _load_network(d, backend)
    preprocessing = None
    if require_preprocessing and not (d / PREPROCESS_JSON).exists():
        raise ModelFileError(f"{d / PREPROCESS_JSON}: file not found")
    if (d / PREPROCESS_JSON).exists():
        preprocessing = _load_preprocessing(d / PREPROCESS_JSON)
        if preprocessing.n_features != network.n_inputs:
            raise ModelFileError(
                f"{d}: model.json expects {network.n_inputs} inputs but preprocess.json "
                f"builds {preprocessing.n_features} features (files from different runs?)"
            )
    return Predictor(network, preprocessing, d)


def _load_preprocessing(path: Path) -> Preprocessing:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read preprocessing state: {exc}") from None
    return Preprocessing.from_dict(doc, str(path))


def _load_network(d: Path, backend: str) -> MLP:
    if not d.is_dir():
        raise ModelFileError(f"{d}: model directory not found")
    meta_path = d / MODEL_JSON
    if not meta_path.is_file():
        raise ModelFileError(f"{meta_path}: missing (not a model directory?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{meta_path}: not a {MODEL_FORMAT} file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"{meta_path}: format_version {version!r} is not supported "
            f"(this program reads versions 1..{FORMAT_VERSION}; a newer program wrote it?)"
        )
    for key in ("n_inputs", "hidden", "activation", "output", "dtype", "weights_sha256"):
        if key not in meta:
            raise ModelFileError(f"{meta_path}: missing key {key!r}")
    w_path = d / WEIGHTS_NPZ
    if not w_path.is_file():
        raise ModelFileError(f"{w_path}: missing")
    blob = w_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise ModelFileError(
            f"{w_path}: SHA-256 does not match model.json (file truncated or modified)"
        )
    try:
        network = MLP(
            meta["n_inputs"],
            meta["hidden"],
            meta["activation"],
            meta["output"],
            meta["dtype"],
            int(meta.get("seed", 0)),
            backend,
            float(meta.get("dropout", 0.0)),
        )
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{meta_path}: invalid architecture ({e})") from None
    widths = [network.n_inputs, *network.hidden, 1]
    params = []
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            for l in range(len(widths) - 1):
                W, b = npz[f"W{l}"], npz[f"b{l}"]
                if W.shape != (widths[l], widths[l + 1]) or b.shape != (widths[l + 1],):
                    raise ModelFileError(
                        f"{w_path}: layer {l} has shapes W{W.shape}, b{b.shape}; "
                        f"model.json implies W{(widths[l], widths[l + 1])}, b{(widths[l + 1],)}"
                    )
                if W.dtype != np.dtype(meta["dtype"]) or b.dtype != np.dtype(meta["dtype"]):
                    raise ModelFileError(f"{w_path}: layer {l} is not {meta['dtype']}")
                params.append((W, b))
            extra = set(npz.files) - {f"{p}{l}" for l in range(len(params)) for p in "Wb"}
    except ModelFileError:
        raise
    except ValueError as e:  # np.load refuses object (pickled) arrays with ValueError
        raise ModelFileError(f"{w_path}: refused ({e})") from None
    except (KeyError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(f"{w_path}: not a valid weights archive ({e})") from None
    if extra:
        raise ModelFileError(f"{w_path}: unexpected arrays {sorted(extra)}")
    for l, (W, b) in enumerate(params):
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ModelFileError(f"{w_path}: layer {l} holds NaN or infinite weights")
    network.set_weights(params)
    return network
