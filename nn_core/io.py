"""Model files: atomic writes, and a model directory that can never run code.

A model directory holds

* ``model.json``: format name and version, architecture, dtype, and the
  SHA-256 of the weights file;
* ``weights.npz``: the arrays ``W0, b0, W1, b1, ...``, read back with
  ``allow_pickle=False``.

Other files (``preprocess.json`` from ``train.py``) may sit beside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MODEL_FORMAT = "purchase-propensity-mlp"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_NPZ = "weights.npz"


class ModelFileError(ValueError):
    """A model file is missing, truncated, tampered with, pickled, or of an unknown version."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A reader sees either the old file or the complete new one, never a
    partial write, even if the process dies half-way.

    Parameters
    ----------
    path : path-like
    data : bytes or str
        ``str`` is written as UTF-8.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the permissions an
        # ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(dirpath: str | os.PathLike, config: dict, params: list) -> None:
    """Write ``model.json`` and ``weights.npz`` into ``dirpath`` (created if needed).

    Parameters
    ----------
    dirpath : path-like
    config : dict
        Architecture (JSON-serialisable): ``n_inputs``, ``hidden``, ``activation``, ...
    params : list of (W, b) NumPy arrays
    """
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {}
    for l, (W, b) in enumerate(params):
        arrays[f"W{l}"], arrays[f"b{l}"] = np.ascontiguousarray(W), np.ascontiguousarray(b)
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        **config,
        "weights_file": WEIGHTS_NPZ,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    # Weights first: model.json names their hash, so a reader never sees a
    # model.json that points at weights that are not yet there.
    atomic_write(d / WEIGHTS_NPZ, blob)
    atomic_write(d / MODEL_JSON, json.dumps(meta, indent=2) + "\n")


def load_model(dirpath: str | os.PathLike) -> tuple[dict, list]:
    """Read and verify a model directory written by :func:`save_model`.

    Returns
    -------
    config : dict
        The contents of ``model.json``.
    params : list of (W, b)

    Raises
    ------
    ModelFileError
        Naming the file and the problem: missing, not JSON, another format,
        a future version, a hash mismatch (truncated or tampered weights), a
        pickled or malformed array, or shapes that do not fit the architecture.
    """
    d = Path(dirpath)
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
    widths = [int(meta["n_inputs"]), *(int(h) for h in meta["hidden"]), 1]
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
    return meta, params
