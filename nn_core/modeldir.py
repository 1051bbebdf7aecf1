"""The model directory: the one place that writes and reads a trained model.

A model directory holds

* ``weights.npz``: the arrays ``W0, b0, W1, b1, ...`` (shapes as in ``MLP.params``) of the
  first network and ``m<k>/W0, m<k>/b0, ...`` of member ``k >= 1`` of an ensemble, read
  back only with ``allow_pickle=False``;
* ``model.json``: format name and version, the architecture (``MLP.config``) and the
  SHA-256 of ``weights.npz``, written after the weights so that it never names weights
  that are not there yet; optionally the classification ``threshold`` (train.py's: the
  best F1 on dev), which ``predict.py`` uses for its ``label`` column. A combined model
  (:class:`nn_core.ensemble.Ensemble`: several members, a logit bias or a calibration) is
  ``format_version`` 2 and adds ``members`` (per member ``hidden``, ``activation``,
  ``dropout``, ``seed`` and ``weight``; member 0 is the top-level architecture),
  ``logit_bias`` and, when calibrated, ``calibration`` (``nn_core/calibration.py``); a
  single uncalibrated network is still written as version 1, which older programs read;
* ``preprocess.json`` (optional): the fitted input transform as data
  (:class:`nn_core.preprocessing.Preprocessing`): column roles, log1p choices, means,
  standard deviations, categories, the allowed range of each numeric column (where
  training stored one), target and id column, and the data's source;
* ``drift_reference.json`` (optional): the training distribution of every raw input column
  and of the scores (:class:`nn_core.drift.Reference`), which ``predict.py`` compares new
  data with (the population stability index).

:func:`save_model` writes it (each file atomically), :func:`load_model` reads it back as
a :class:`Predictor`, which scores a raw table (``predict_proba(DataFrame)``). Every
reader of a model (``predict.py``, the exporter, the tests) goes through here; nothing
in a model directory is ever a pickle.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import backends
from .activations import ACTIVATIONS
from .calibration import calibration_from_dict
from .drift import Reference
from .ensemble import Ensemble
from .io import ModelFileError, atomic_write
from .losses import OUTPUTS
from .network import DTYPES, MAX_HIDDEN_LAYERS, MAX_INPUTS, MAX_PARAMETERS, MAX_WIDTH, MLP
from .onehot import FEW_ROWS, InputSplit, predict_inputs
from .preprocessing import Preprocessing, check_finite_features

MODEL_FORMAT = "purchase-propensity-mlp"
FORMAT_VERSION = 2
#: The version of a single uncalibrated network (what programs before ensembles read).
PLAIN_FORMAT_VERSION = 1
#: Most members a model directory may hold.
MAX_MEMBERS = 64
#: The keys of one ``members`` entry of model.json.
MEMBER_KEYS = ("hidden", "activation", "dropout", "seed", "weight")
MODEL_JSON = "model.json"
WEIGHTS_NPZ = "weights.npz"
PREPROCESS_JSON = "preprocess.json"
#: The training distributions of the inputs and scores (``nn_core/drift.py``), optional.
REFERENCE_JSON = "drift_reference.json"
#: Every file a model directory may hold (:func:`save_model` writes no other).
MODEL_FILES = (MODEL_JSON, WEIGHTS_NPZ, PREPROCESS_JSON, REFERENCE_JSON)
#: Size limits of the model files, checked before they are read.
MAX_MODEL_JSON_BYTES = 1 << 20  # model.json: the architecture and a hash
MAX_PREPROCESS_JSON_BYTES = 256 << 20  # preprocess.json: means, stds, categories
MAX_REFERENCE_JSON_BYTES = 256 << 20  # drift_reference.json: bin edges and counts
#: What a weights.npz may hold beyond its arrays' bytes: per array its zip entries (local
#: header and central directory, each with the name) and its .npy header (at most 64 KiB,
#: ``numpy.lib.format``), and the zip's end records.
NPZ_OVERHEAD_PER_ARRAY = 2 * (46 + 2 * 64) + (1 << 16)
NPZ_OVERHEAD = 1 << 10


class Predictor:
    """A loaded model directory: its network(s) and the fitted preprocessing, scoring raw rows.

    The combined logit is ``z = logit_bias + sum_k w_k z_k(x)`` over ``members``
    (``nn_core/ensemble.py``); :meth:`predict_proba` gives ``calibration(z)``, or
    ``sigma(z)`` without a calibration. A plain model is ``members == [(network, 1.0)]``,
    ``logit_bias == 0`` and no calibration: its probabilities are ``network.predict_proba``.

    Attributes
    ----------
    network : nn_core.MLP
        The first member (the only one of a plain model).
    members : list of (MLP, float)
        The networks and their weights ``w_k``.
    logit_bias : float
        ``c``.
    calibration : nn_core.calibration.Platt or Isotonic or None
    ensemble : nn_core.ensemble.Ensemble
        All of the above, scoring feature matrices.
    preprocessing : nn_core.preprocessing.Preprocessing or None
        ``None`` for a directory saved without preprocessing (network inputs only).
    path : Path
    extra : dict
        ``model.json``'s ``extra`` entry (what a caller of ``save_model`` added, e.g. the
        class labels of ``nn_core.sklearn.PropensityClassifier``); ``{}`` when absent.
    threshold : float or None
        The classification threshold saved with the model (predict ``p >= threshold`` as
        positive); ``None`` when none was saved (a directory from before it was stored).
    reference : nn_core.drift.Reference or None
        The training distributions of the inputs and scores (``drift_reference.json``,
        checked against the preprocessing); ``None`` for a directory without it (saved
        before it was stored, or without preprocessing): no drift check.
    """

    reference: Reference | None = None

    def __init__(self, model: MLP | Ensemble, preprocessing: Preprocessing | None, path: Path,
                 extra: dict | None = None, threshold: float | None = None) -> None:
        self.ensemble = model if isinstance(model, Ensemble) else Ensemble([(model, 1.0)])
        self.network = self.ensemble.members[0][0]
        self.preprocessing = preprocessing
        self.path = path
        self.extra = {} if extra is None else extra
        self.threshold = threshold

    @property
    def members(self) -> list[tuple[MLP, float]]:
        return self.ensemble.members

    @property
    def logit_bias(self) -> float:
        return self.ensemble.bias

    @property
    def calibration(self):
        return self.ensemble.calibration

    def _preprocessing(self) -> Preprocessing:
        if self.preprocessing is None:
            raise ModelFileError(f"{self.path / PREPROCESS_JSON}: missing (the directory holds "
                                 "a network without its preprocessing)")
        return self.preprocessing

    def features(self, frame: pd.DataFrame, first_row: int = 1) -> np.ndarray:
        """The networks' inputs ``X`` (n, n_inputs) float64 of a raw table; a ValueError names
        the row and column of a value whose feature is not finite."""
        pre = self._preprocessing()
        X = pre.transform(frame, first_row)
        check_finite_features(X, pre.columns, frame, first_row, self.network.dtype)
        return X

    def logit(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """The combined logit ``z`` (n,) float64 of features ``X`` (n, n_inputs)."""
        return self.ensemble.logit(X, threads)

    def proba(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Predicted (calibrated) probabilities (n,) float64 of features ``X``."""
        return self.ensemble.predict_proba(X, threads)

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
        if self.one_network and self.preprocessing is not None and len(frame) > FEW_ROWS:
            # One network: the one-hot blocks' share of its first layer as gathered
            # rows of W_0, without the feature matrix (nn_core/onehot.py); a row it
            # cannot take goes through the feature matrix and its checks below. A few
            # rows (online scoring) keep the network's own few-row path, which is faster.
            U = self.preprocessing.inputs(frame, first_row)
            p = self.proba_inputs(InputSplit(self.preprocessing.columns), U, threads)
            if p is not None:
                return p
        return self.proba(self.features(frame, first_row), threads)

    @property
    def one_network(self) -> bool:
        """Whether one network computes the model: a plain model's, or the ensemble's
        members as one (``Ensemble.merged``); :meth:`proba_inputs` then applies."""
        return self.ensemble.plain or self.ensemble.merged() is not None

    def proba_inputs(self, split: InputSplit, U: np.ndarray, threads: int | None = None
                     ) -> np.ndarray | None:
        """Predicted probabilities (n,) float64 of raw inputs ``U`` (``Preprocessing.inputs``)
        through the one-hot split (``nn_core/onehot.py: predict_inputs``).

        A plain model's network gives them itself; an ensemble's one network
        (``Ensemble.merged``) gives ``sum_k w_k z_k``, and ``z = c + sum_k w_k z_k`` is
        calibrated or squashed as ``Ensemble.predict_proba`` does. None where the model is
        not one network (:attr:`one_network`) or the path does not apply to ``U``
        (``predict_inputs``): the caller scores the feature matrix.
        """
        if self.ensemble.plain:
            p = predict_inputs(self.network, split, U, threads)
            return None if p is None else np.asarray(p, dtype=np.float64)
        merged = self.ensemble.merged()
        z = None if merged is None else predict_inputs(merged, split, U, threads)
        if z is None:
            return None
        return self.ensemble.proba_of_logit(self.ensemble.bias + np.asarray(z, np.float64))


def save_model(dirpath: str | os.PathLike, network: MLP | Ensemble,
               preprocessing: Preprocessing | None = None, extra: dict | None = None,
               threshold: float | None = None, reference: Reference | None = None) -> Path:
    """Write a model directory (created if needed); every file atomically.

    Parameters
    ----------
    dirpath : path-like
    network : MLP or Ensemble
        One network, or several combined (``nn_core/ensemble.py``: members with weights, a
        logit bias and a calibration; written as format_version 2 unless it is plain).
    preprocessing : Preprocessing, optional
        The fitted input transform; written as ``preprocess.json``.
    extra : dict, optional
        JSON values stored under ``extra`` in ``model.json`` and given back as
        ``Predictor.extra`` (the network and its preprocessing do not depend on them).
    threshold : float, optional
        The classification threshold (a finite number; in [0, 1] for a sigmoid output),
        stored as ``threshold`` in ``model.json`` and given back as ``Predictor.threshold``.
    reference : nn_core.drift.Reference, optional
        The training distributions of the raw inputs and of the scores
        (``nn_core/drift.py: fit_reference``), written as ``drift_reference.json`` (needs
        ``preprocessing``) and given back as ``Predictor.reference``.

    Returns
    -------
    Path
        The directory.
    """
    if reference is not None and preprocessing is None:
        raise ValueError("a drift reference needs the preprocessing it describes")
    if isinstance(network, MLP):
        network = Ensemble([(network, 1.0)])
    if not isinstance(network, Ensemble):
        raise TypeError("network must be an nn_core.MLP or nn_core.ensemble.Ensemble, got "
                        f"{type(network).__name__}")
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        raise TypeError("preprocessing must be an nn_core.preprocessing.Preprocessing, got "
                        f"{type(preprocessing).__name__}")
    if len(network.members) > MAX_MEMBERS:
        raise ValueError(f"an ensemble has at most {MAX_MEMBERS} members, got "
                         f"{len(network.members)}")
    first = network.members[0][0]
    if not network.plain and any(m.output != "sigmoid" for m, _ in network.members):
        raise ValueError("a combined model (several members, a weight, a bias or a "
                         "calibration) needs the sigmoid output")
    if threshold is not None:
        threshold = check_threshold(threshold, first.output, "threshold")
    for k, (m, _) in enumerate(network.members):
        if not np.isfinite(m.theta).all():
            raise ValueError(f"{Path(dirpath) / WEIGHTS_NPZ}: not written, network {k} holds "
                             "NaN or infinite weights (training diverged?)")
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {}
    for k, (m, _) in enumerate(network.members):
        for l, (W, b) in enumerate(m.params):
            arrays[f"{_prefix(k)}W{l}"] = np.ascontiguousarray(W)
            arrays[f"{_prefix(k)}b{l}"] = np.ascontiguousarray(b)
    _savez(buf, arrays)
    blob = buf.getvalue()
    meta = {
        "format": MODEL_FORMAT,
        "format_version": PLAIN_FORMAT_VERSION if network.plain else FORMAT_VERSION,
        **first.config(),
        "weights_file": WEIGHTS_NPZ,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    if not network.plain:
        meta["members"] = [{**{k: m.config()[k] for k in MEMBER_KEYS[:-1]}, "weight": w}
                           for m, w in network.members]
        meta["logit_bias"] = network.bias
        if network.calibration is not None:
            meta["calibration"] = network.calibration.to_dict()
    if extra is not None:
        meta["extra"] = extra
    if threshold is not None:
        meta["threshold"] = threshold
    # allow_nan=False: a NaN or infinity would be written as bare NaN/Infinity, which
    # is not JSON and which load_model refuses; refuse it before writing any file.
    meta_text = _json_text(meta, d / MODEL_JSON)
    pre_text = (None if preprocessing is None
                else _json_text(preprocessing.to_dict(), d / PREPROCESS_JSON))
    reference_text = (None if reference is None
                      else _json_text(reference.to_dict(), d / REFERENCE_JSON))
    # Weights first: model.json names their hash, so a reader never sees a
    # model.json that points at weights that are not yet there.
    atomic_write(d / WEIGHTS_NPZ, blob)
    atomic_write(d / MODEL_JSON, meta_text)
    if pre_text is not None:
        atomic_write(d / PREPROCESS_JSON, pre_text)
    if reference_text is not None:
        atomic_write(d / REFERENCE_JSON, reference_text)
    elif os.path.lexists(d / REFERENCE_JSON):  # a former model's: it describes other data
        os.unlink(d / REFERENCE_JSON)
    return d


def is_model_dir(dirpath: str | os.PathLike) -> bool:
    """Whether ``dirpath`` holds a file of a model directory, whole or damaged: one of
    :data:`MODEL_FILES` other than model.json (a dangling symbolic link included), or a
    model.json of this format (:data:`MODEL_FORMAT`); a model.json of another program (an
    export's ``NAME.json`` named ``model``) does not count."""
    d = Path(dirpath)
    if any(os.path.lexists(d / name) for name in MODEL_FILES if name != MODEL_JSON):
        return True
    if not os.path.lexists(d / MODEL_JSON):
        return False
    try:
        meta = _read_json(d / MODEL_JSON, MAX_MODEL_JSON_BYTES, "model")
    except ModelFileError:
        return False
    return isinstance(meta, dict) and meta.get("format") == MODEL_FORMAT


def _prefix(k: int) -> str:
    """The name prefix of member ``k``'s arrays in weights.npz: none for the first (so a
    single network's file is what it always was), ``m<k>/`` for the others."""
    return "" if k == 0 else f"m{k}/"


def _savez(buf: io.BytesIO, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez(buf, **arrays)`` with a fixed time stamp on every zip entry, so that the same
    weights give the same bytes (a repeated run's weights.npz compares equal byte for byte)."""
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16  # what ZipFile gives an entry opened by name
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)


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
    if not isinstance(dirpath, str | os.PathLike):
        raise TypeError(f"dirpath must be a path, got {type(dirpath).__name__}")
    backends.check_backend(backend)  # an argument, not a problem of the files
    d = Path(dirpath)
    model, extra, threshold = _load_network(d, backend)
    network = model.members[0][0]
    preprocessing = None
    if require_preprocessing and not os.path.lexists(d / PREPROCESS_JSON):
        raise ModelFileError(f"{d / PREPROCESS_JSON}: file not found")
    if os.path.lexists(d / PREPROCESS_JSON):
        preprocessing = _load_preprocessing(d / PREPROCESS_JSON)
        if preprocessing.n_features != network.n_inputs:
            raise ModelFileError(
                f"{d}: model.json expects {network.n_inputs} inputs but preprocess.json "
                f"builds {preprocessing.n_features} features (files from different runs?)"
            )
    predictor = Predictor(model, preprocessing, d, extra, threshold)
    if preprocessing is not None and os.path.lexists(d / REFERENCE_JSON):
        predictor.reference = Reference.from_dict(
            _read_json(d / REFERENCE_JSON, MAX_REFERENCE_JSON_BYTES, "drift reference"),
            preprocessing.columns, str(d / REFERENCE_JSON))
    return predictor


def _load_preprocessing(path: Path) -> Preprocessing:
    return Preprocessing.from_dict(_read_json(path, MAX_PREPROCESS_JSON_BYTES, "preprocessing"),
                                   str(path))


def _read_json(path: Path, limit: int, what: str):
    """The JSON document in ``path``; ModelFileError naming the file for anything that is not a
    regular file of at most ``limit`` bytes holding UTF-8 JSON (nesting too deep included)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise ModelFileError(f"{path}: {st.st_size:,} bytes; a {what} file is at most "
                                 f"{limit:,} bytes")
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f"{path}: file not found") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read {what} file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{path}: not valid JSON (not UTF-8 text at byte {e.start})") \
            from None
    except (json.JSONDecodeError, ValueError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: not valid JSON (nested too deeply)") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _architecture(meta: dict, meta_path: Path) -> dict:
    """The keyword arguments of ``MLP`` that model.json describes, each checked for its type
    and range (``nn_core/network.py: MAX_INPUTS``, ``MAX_WIDTH``, ``MAX_HIDDEN_LAYERS``) before
    anything is allocated; ModelFileError naming the file and the key otherwise."""
    def bad(key: str, expected: str) -> ModelFileError:
        return ModelFileError(f"{meta_path}: {key!r} must be {expected}, got "
                              f"{_short_repr(meta[key])}")

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("n_inputs", "hidden", "activation", "output", "dtype", "weights_sha256"):
        if key not in meta:
            raise ModelFileError(f"{meta_path}: missing key {key!r}")
    if not (integer(meta["n_inputs"]) and 1 <= meta["n_inputs"] <= MAX_INPUTS):
        raise bad("n_inputs", f"an integer in [1, {MAX_INPUTS:,}]")
    hidden = meta["hidden"]
    if not isinstance(hidden, list) or len(hidden) > MAX_HIDDEN_LAYERS:
        raise bad("hidden", f"a list of at most {MAX_HIDDEN_LAYERS} layer widths")
    for i, h in enumerate(hidden):
        if not (integer(h) and 1 <= h <= MAX_WIDTH):
            raise ModelFileError(f"{meta_path}: 'hidden'[{i}] must be an integer in "
                                 f"[1, {MAX_WIDTH:,}], got {_short_repr(h)}")
    for key, table in (("activation", ACTIVATIONS), ("output", OUTPUTS), ("dtype", DTYPES)):
        if not (isinstance(meta[key], str) and meta[key] in table):
            raise bad(key, f"one of {list(table)}")
    sha = meta["weights_sha256"]
    if not (isinstance(sha, str) and len(sha) == 64
            and all(c in "0123456789abcdef" for c in sha)):
        raise bad("weights_sha256", "64 lower-case hexadecimal digits")
    seed, dropout = meta.get("seed", 0), meta.get("dropout", 0.0)
    if not (integer(seed) and 0 <= seed < 2**64):
        raise ModelFileError(f"{meta_path}: 'seed' must be an integer in [0, 2**64), "
                             f"got {_short_repr(seed)}")
    if not (isinstance(dropout, int | float) and not isinstance(dropout, bool)
            and 0.0 <= dropout < 1.0):
        raise ModelFileError(f"{meta_path}: 'dropout' must be a number in [0, 1), "
                             f"got {_short_repr(dropout)}")
    widths = [meta["n_inputs"], *hidden, 1]
    n_params = sum(a * b + b for a, b in itertools.pairwise(widths))
    if n_params > MAX_PARAMETERS:
        raise ModelFileError(f"{meta_path}: the architecture has {n_params:,} parameters; at "
                             f"most {MAX_PARAMETERS:,} are allowed")
    return {"n_inputs": meta["n_inputs"], "hidden": tuple(hidden),
            "activation": meta["activation"], "output": meta["output"], "dtype": meta["dtype"],
            "seed": seed, "dropout": float(dropout)}


def _short_repr(value) -> str:
    """``repr(value)`` cut to 60 characters (an integer of thousands of digits included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 190:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_npy_header(zf: zipfile.ZipFile, member: str, shape: tuple, dtype: np.dtype,
                      w_path: Path) -> None:
    """Refuse a weights array whose ``.npy`` header (read without its data) is not ``shape``
    of ``dtype``, so a header claiming a huge shape is refused before anything is read."""
    with zf.open(member) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unknown .npy version {version}")
    if got_dtype.hasobject:
        raise ModelFileError(f"{w_path}: refused ({member} holds Python objects, a pickle)")
    if tuple(got_shape) != shape:
        prefix, _, name = member.rpartition("/")
        layer, kind = name[1:-4], name[0]
        which = f"member {prefix[1:]} " if prefix else ""
        raise ModelFileError(
            f"{w_path}: {which}layer {layer} has shapes {kind}{tuple(got_shape)} in its "
            f"header; model.json implies {kind}{shape}")
    if got_dtype != dtype or fortran:
        raise ModelFileError(f"{w_path}: {member[:-4]} is {got_dtype}"
                             f"{' (Fortran order)' if fortran else ''}, not {dtype}")


def _load_network(d: Path, backend: str) -> tuple[Ensemble, dict, float | None]:
    """The verified network(s) of ``d`` with their combination, model.json's ``extra`` entry
    (``{}`` when absent) and its ``threshold`` (``None`` when absent)."""
    if not d.is_dir():
        raise ModelFileError(f"{d}: model directory not found")
    meta_path = d / MODEL_JSON
    if not meta_path.is_file():
        raise ModelFileError(f"{meta_path}: missing (not a model directory?)")
    meta = _read_json(meta_path, MAX_MODEL_JSON_BYTES, "model")
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{meta_path}: not a {MODEL_FORMAT} file")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path}: format_version {_short_repr(version)} is not supported "
            f"(this program reads versions 1..{FORMAT_VERSION}; a newer program wrote it?)"
        )
    arch = _architecture(meta, meta_path)
    archs, weights, bias, calibration = _combination(meta, version, arch, meta_path)
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise ModelFileError(f"{meta_path}: 'extra' must be an object, got "
                             f"{type(extra).__name__}")
    threshold = meta.get("threshold")
    if threshold is not None:
        try:
            threshold = check_threshold(threshold, arch["output"], "'threshold'")
        except ValueError as e:
            raise ModelFileError(f"{meta_path}: {e}") from None
    dtype = np.dtype(arch["dtype"])
    shapes = {}
    for k, member in enumerate(archs):
        widths = [member["n_inputs"], *member["hidden"], 1]
        for l, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            shapes[f"{_prefix(k)}W{l}.npy"] = (fan_in, fan_out)
            shapes[f"{_prefix(k)}b{l}.npy"] = (fan_out,)
    w_path = d / WEIGHTS_NPZ
    if not w_path.is_file():
        raise ModelFileError(f"{w_path}: missing")
    # Bound the file by what the architecture needs (the arrays plus, per array, zip
    # entries and an .npy header) before reading any of it.
    limit = sum(math.prod(s) for s in shapes.values()) * dtype.itemsize \
        + len(shapes) * NPZ_OVERHEAD_PER_ARRAY + NPZ_OVERHEAD
    try:
        with open(w_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise ModelFileError(
                    f"{w_path}: {size:,} bytes, more than the {limit:,} that model.json's "
                    "architecture can take (file replaced or modified?)")
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
            if digest.hexdigest() != meta["weights_sha256"]:
                raise ModelFileError(
                    f"{w_path}: SHA-256 does not match model.json (file truncated or modified)"
                )
            f.seek(0)
            arrays = _read_weights(f, shapes, dtype, w_path)
    except OSError as e:
        raise ModelFileError(f"{w_path}: cannot read it: {e.strerror or e}") from None
    members = []
    for k, member in enumerate(archs):
        params = [(arrays[f"{_prefix(k)}W{l}.npy"], arrays[f"{_prefix(k)}b{l}.npy"])
                  for l in range(len(member["hidden"]) + 1)]
        which = f"member {k} " if k else ""
        for l, (W, b) in enumerate(params):
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ModelFileError(f"{w_path}: {which}layer {l} holds NaN or infinite "
                                     "weights")
        try:
            network = MLP(backend=backend, **member)
        except ValueError as e:
            raise ModelFileError(f"{meta_path}: invalid architecture ({e})") from None
        network.set_weights(params)
        members.append((network, weights[k]))
    return Ensemble(members, bias, calibration), extra, threshold


def _combination(meta: dict, version: int, arch: dict, meta_path: Path):
    """The members' architectures, their weights, the logit bias and the calibration that
    model.json describes (version 1: the one network, weight 1, bias 0, none), each checked;
    ModelFileError naming the file and the key otherwise."""
    keys = ("members", "logit_bias", "calibration")
    if version == PLAIN_FORMAT_VERSION:
        present = [k for k in keys if k in meta]
        if present:
            raise ModelFileError(f"{meta_path}: {present[0]!r} needs format_version "
                                 f"{FORMAT_VERSION}")
        return [arch], [1.0], 0.0, None
    entries = meta.get("members")
    if not (isinstance(entries, list) and 1 <= len(entries) <= MAX_MEMBERS):
        raise ModelFileError(f"{meta_path}: 'members' must be a list of 1 to {MAX_MEMBERS} "
                             "members (format_version 2)")

    def number(value) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))

    archs, weights = [], []
    for k, entry in enumerate(entries):
        if not (isinstance(entry, dict) and set(entry) == set(MEMBER_KEYS)):
            raise ModelFileError(f"{meta_path}: 'members'[{k}] must be an object with exactly "
                                 f"the keys {list(MEMBER_KEYS)}")
        try:
            member = _architecture({**meta, **entry}, meta_path)
        except ModelFileError as e:
            raise ModelFileError(str(e).replace(f"{meta_path}: ",
                                                f"{meta_path}: 'members'[{k}]: ", 1)) from None
        if k == 0 and member != arch:
            raise ModelFileError(f"{meta_path}: 'members'[0] must repeat the top-level "
                                 "architecture (hidden, activation, dropout, seed)")
        if member["output"] != "sigmoid":
            raise ModelFileError(f"{meta_path}: a combined model (format_version 2) needs the "
                                 "sigmoid output")
        if not number(entry["weight"]):
            raise ModelFileError(f"{meta_path}: 'members'[{k}]: 'weight' must be a finite "
                                 f"number, got {_short_repr(entry['weight'])}")
        archs.append(member)
        weights.append(float(entry["weight"]))
    bias = meta.get("logit_bias")
    if not number(bias):
        raise ModelFileError(f"{meta_path}: 'logit_bias' must be a finite number, got "
                             f"{_short_repr(bias)}")
    calibration = None
    if "calibration" in meta:
        try:
            calibration = calibration_from_dict(meta["calibration"], "'calibration'")
        except ValueError as e:
            raise ModelFileError(f"{meta_path}: {e}") from None
    return archs, weights, float(bias), calibration


def check_threshold(value, output: str, name: str = "threshold") -> float:
    """``value`` as a classification threshold: a finite number, in [0, 1] for a network
    whose output is a probability (any output but ``identity``); ValueError otherwise,
    naming it as ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {_short_repr(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if output != "identity" and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (the network's output is a probability), "
                         f"got {value:g}")
    return value


def _read_weights(f, shapes: dict, dtype: np.dtype, w_path: Path) -> dict:
    """The arrays of an open weights.npz by entry name (``W0.npy``, ``m1/W0.npy``, ...),
    exactly the entries of ``shapes``, each header checked before its data."""
    try:
        with zipfile.ZipFile(f) as zf:
            names = set(zf.namelist())
            missing = [m[:-4] for m in shapes if m not in names]
            if missing:
                raise ModelFileError(f"{w_path}: missing arrays {missing}")
            extra = names - set(shapes)
            if extra:
                raise ModelFileError(f"{w_path}: unexpected arrays "
                                     f"{sorted(n.removesuffix('.npy') for n in extra)}")
            for member, shape in shapes.items():
                _check_npy_header(zf, member, shape, dtype, w_path)
            arrays = {}
            for member in shapes:
                with zf.open(member) as fp:
                    arrays[member] = np.lib.format.read_array(fp, allow_pickle=False)
    except ModelFileError:
        raise
    except ValueError as e:  # read_array refuses object (pickled) arrays with ValueError
        raise ModelFileError(f"{w_path}: refused ({e})") from None
    except (KeyError, OSError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise ModelFileError(f"{w_path}: not a valid weights archive ({e})") from None
    return arrays
