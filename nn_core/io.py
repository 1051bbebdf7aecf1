"""File writing shared by every writer: nothing half-written is ever left behind.

* :func:`atomic_write`: one file, through a temporary file and a rename;
* :func:`new_run_dir` and :func:`point_latest`: a directory built under a temporary name
  and renamed when complete (``train.py``'s run directory), and ``latest`` beside it;
* :class:`ModelFileError`: the error for a bad model file.

The model directory itself is written and read in one place, ``nn_core/modeldir.py``.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
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
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def umask() -> int:
    """The process's file-creation mask (reading it means setting it, so set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same resolved path (links followed, also
    for files that do not exist yet) or, when both exist, the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False



def new_run_dir(out: Path | None, root: Path = Path("runs")) -> tuple[Path, Path, bool]:
    """The final run directory, a fresh temporary sibling to build it in, and whether it is
    the default ``root/<timestamp>`` (so ``root/latest`` should point at it).

    The run is written into the temporary directory and renamed to ``out`` at the end
    (``os.replace``), so an interrupted run leaves no partial output.

    Raises
    ------
    FileExistsError
        When ``out`` exists and is not an empty directory.
    """
    default = out is None
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out, k = root / stamp, 1
        while out.exists():
            out, k = root / f"{stamp}-{k}", k + 1
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; a run directory is not secret
    return out, tmp, default


def point_latest(out: Path) -> str:
    """Make ``latest`` next to ``out`` point at it: a relative symlink, replaced atomically;
    where symlinks are not allowed, a text file holding the run directory's name.

    Returns how: ``"symlink"``, ``"text pointer"`` or ``"unchanged (...)"``.
    """
    latest, tmp_link = out.parent / "latest", out.parent / f".latest.{os.getpid()}"
    try:
        if tmp_link.is_symlink():
            tmp_link.unlink()
        os.symlink(out.name, tmp_link, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            raise OSError("runs/latest is a real directory")
        os.replace(tmp_link, latest)
        return "symlink"
    except OSError:
        for link in (tmp_link, latest):
            if link.is_symlink():
                link.unlink()
        if latest.is_dir():
            return "unchanged (runs/latest is a directory)"
        atomic_write(latest, out.name + "\n")
        return "text pointer"
