"""File writing shared by every writer: atomic writes, and the error for a bad model file.

The model directory itself is written and read in one place,
``nn_core/modeldir.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
