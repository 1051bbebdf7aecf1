"""File writing shared by every writer: nothing half-written is ever left behind.

* :func:`atomic_write`: one file, through a temporary file and a rename;
* :func:`new_run_dir` and :func:`point_latest`: a directory built under a temporary name
  and renamed when complete (``train.py``'s run directory), and ``latest`` beside it;
* :func:`temp_file`, :func:`replace_temp` and :func:`remove_stale`: the names of work in
  progress (``.NAME.PID-XXXXXXXX.tmp`` files, ``.NAME.PID-XXXXXXXX.partial`` directories),
  locked while their writer lives, renamed onto the file they become (an error names that
  file, never the temporary one), and the removal of those whose writer is gone (killed);
* :func:`describe_os_error`, :func:`sigterm_as_interrupt` and
  :class:`OneLineArgumentParser`, for the command lines;
* :class:`ModelFileError`: the error for a bad model file.

Work in progress is named after the file it becomes and the writer's process id, and is
held under an exclusive ``flock`` while being written: a later writer in the same folder
removes it only when that process is gone *and* the lock is free (the kernel drops the lock
of a killed process), so a ``kill -9`` leaves nothing that outlives the next run.

The model directory itself is written and read in one place, ``nn_core/modeldir.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from datetime import datetime
from pathlib import Path


class ModelFileError(ValueError):
    """A model file is missing, truncated, tampered with, pickled, or of an unknown version."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A reader sees either the old file or the complete new one, never a
    partial write, even if the process dies half-way (the temporary file of a
    killed writer is removed by the next :func:`remove_stale` of the folder).

    Parameters
    ----------
    path : path-like
    data : bytes or str
        ``str`` is written as UTF-8.

    Raises
    ------
    OSError
        With ``filename`` set to ``path`` (a full disk, ``EFBIG``, permissions, ...);
        nothing is left behind and an existing ``path`` is unchanged.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"atomic_write takes bytes or str, got {type(data).__name__}")
    tmp = None
    try:
        fd, tmp = temp_file(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        replace_temp(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            # write() and fsync() errors (ENOSPC, EFBIG) carry no file name.
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


#: Work-in-progress names: ``.NAME.PID-RANDOM.tmp`` (a file) or ``.NAME.PID-RANDOM.partial``
#: (a directory), see :func:`temp_file` and :func:`new_run_dir`.
_WORK_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<rand>[A-Za-z0-9_]+)\."
                        r"(?P<kind>tmp|partial)$", re.DOTALL)


def temp_file(path: str | os.PathLike) -> tuple[int, Path]:
    """Create the temporary file that will become ``path``, beside it, locked by this process.

    Its name is ``.NAME.PID-RANDOM.tmp`` and it is held under an exclusive ``flock`` for as
    long as the returned descriptor is open, so that :func:`remove_stale` can tell the
    work of a live writer from what a killed one left behind. Stale temporary files of
    ``path``'s folder are removed first.

    Parameters
    ----------
    path : path-like
        The file the temporary file will replace (``os.replace(tmp, path)``).

    Returns
    -------
    (int, Path)
        The open (read-write) descriptor and the temporary file's path.

    Raises
    ------
    OSError
        With ``filename`` set to ``path``, not to the temporary name the user never gave
        (a folder that is not writable, a full disk).
    """
    path = Path(path)
    folder = path.parent
    remove_stale(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{_stem(path.name)}.{os.getpid()}-",
                                   suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
    return fd, Path(tmp)


def replace_temp(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give :func:`temp_file`'s ``tmp`` the permissions an ordinary ``open`` would have
    (``mkstemp`` makes it private, 0600) and rename it onto ``path``.

    Raises
    ------
    OSError
        With ``filename`` set to ``path`` (``tmp`` is left for the caller to remove).
    """
    try:
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _stem(name: str) -> str:
    """``name`` as it appears in a work-in-progress name: cut to 200 characters, so that the
    temporary name (30 characters more) stays within the 255 a file name may have."""
    return name[:200]


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (signal 0 probes without sending anything)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by another user
        return False
    except OverflowError:  # beyond any pid
        return True
    return False


def _try_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` (file or directory) holding its exclusive ``flock``,
    or None when another process holds it (or it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the work in progress of dead writers in ``folder``; return what was removed.

    An entry named like :func:`temp_file`'s files or :func:`new_run_dir`'s ``.partial``
    directories is stale when the process named in it no longer exists *and* its lock is
    free (a symbolic link, which cannot be locked: when the process is gone). A stale
    ``.partial`` directory's reserved run directory, if it is still empty, goes with it.
    Anything else, and anything a live process may still own, is left alone; errors
    (a folder that cannot be listed, a race with another cleaner) are ignored.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _WORK_NAME.match(entry.name)
        if m is None or not _process_gone(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                path.unlink()
                removed.append(path)
                continue
            fd = _try_lock(path)
            if fd is None:
                continue
            try:
                if m["kind"] == "partial" and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                    _remove_if_unclaimed(folder / m["name"])
                elif m["kind"] == "tmp" and entry.is_file(follow_symlinks=False):
                    path.unlink()
                else:
                    continue
            finally:
                os.close(fd)
            removed.append(path)
        except OSError:
            continue
    return removed


def _remove_if_unclaimed(path: Path) -> None:
    """Remove the empty directory ``path`` unless a live run holds its lock."""
    fd = _try_lock(path) if path.is_dir() and not path.is_symlink() else None
    if fd is None:
        return
    try:
        os.rmdir(path)  # only if empty
    except OSError:
        pass
    finally:
        os.close(fd)


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



class RunDir:
    """A run directory being built: the reserved final path ``out`` and the locked
    temporary directory ``tmp`` beside it that becomes ``out`` in :meth:`commit`.

    Attributes
    ----------
    out : Path
        The final directory: reserved (an empty directory this run holds locked) until
        :meth:`commit` renames ``tmp`` onto it.
    tmp : Path
        ``.NAME.PID-RANDOM.partial`` beside ``out``; the run writes its files here.
    default : bool
        Whether ``out`` is the default ``root/<timestamp>`` (``root/latest`` should then
        point at it).
    """

    def __init__(self, out: Path, tmp: Path, default: bool, locks: list[int],
                 created: bool) -> None:
        self.out, self.tmp, self.default = out, tmp, default
        self._locks, self._created = locks, created

    def _release(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks = []

    def commit(self) -> None:
        """Rename ``tmp`` onto the reserved ``out`` (one ``rename``: it replaces the empty
        directory), then drop the locks.

        Raises
        ------
        OSError
            When the rename fails; ``tmp`` and its files are kept and named in the error.
        """
        try:
            os.rename(self.tmp, self.out)
        except OSError as exc:
            self._release()
            raise OSError(exc.errno, f"{exc.strerror}; the run's files are kept in "
                          f"{self.tmp}", str(self.out)) from None
        self._release()

    def discard(self) -> None:
        """Remove ``tmp`` and, if this run created it, the reserved ``out``; drop the locks."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._created:
            try:
                os.rmdir(self.out)
            except OSError:
                pass
        self._release()


def new_run_dir(out: Path | None, root: Path = Path("runs")) -> RunDir:
    """Reserve a run directory and create the temporary directory it is built in.

    The final directory is reserved at the start, atomically: ``mkdir`` (which exactly one
    of several concurrent runs wins) and an exclusive ``flock`` on it, held until the run
    ends. So two default runs started in the same second get ``root/<stamp>`` and
    ``root/<stamp>-1``, and of two runs given the same ``out`` the second is refused at
    once; no run ever removes or replaces another's results. The run is written into a
    locked ``.NAME.PID-RANDOM.partial`` sibling and renamed onto the reserved directory at
    the end (:meth:`RunDir.commit`), so an interrupted run leaves no partial output, and the
    leftovers of a killed one are removed by the next run in the same folder
    (:func:`remove_stale`).

    Parameters
    ----------
    out : Path or None
        The directory asked for; it may exist as an empty directory. None: ``root/<stamp>``.
    root : Path
        The folder of default run directories.

    Raises
    ------
    FileExistsError
        When ``out`` exists and is not an empty directory, or another run is writing it.
    OSError
        When the folder cannot be created or written (the message names the path).
    """
    default = out is None
    parent = root if default else out.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for k in range(10_000):
            out = root / (stamp if k == 0 else f"{stamp}-{k}")
            reserved = _reserve(out, may_exist=False)
            if reserved is not None:
                break
        else:
            raise FileExistsError(errno.EEXIST, "no free run directory name", str(root / stamp))
    else:
        reserved = _reserve(out, may_exist=True)
        if reserved is None:
            raise FileExistsError(f"{out}: another run is writing into it")
    lock, created = reserved
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{_stem(out.name)}.{os.getpid()}-",
                                    suffix=".partial", dir=out.parent))
    except BaseException:
        os.close(lock)
        if created:
            os.rmdir(out)
        raise
    tmp_lock = _try_lock(tmp)
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; a run directory is not secret
    return RunDir(out, tmp, default, [lock] + ([tmp_lock] if tmp_lock is not None else []),
                  created)


def _reserve(out: Path, may_exist: bool) -> tuple[int, bool] | None:
    """Create ``out`` (or, with ``may_exist``, take an existing empty directory) and lock it.

    Returns the lock's descriptor and whether ``out`` was created here, or None when
    another run holds it (or, without ``may_exist``, it exists).

    Raises
    ------
    FileExistsError
        With ``may_exist``: ``out`` exists and is not an empty directory.
    """
    try:
        os.mkdir(out)
        created = True
    except FileExistsError:
        if not may_exist:
            return None
        if out.is_symlink() or not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: already exists and is not an empty directory") \
                from None
        created = False
    fd = _try_lock(out)
    if fd is None:
        return None
    if any(out.iterdir()):  # another run finished into it between our check and the lock
        os.close(fd)
        raise FileExistsError(f"{out}: already exists and is not an empty directory")
    return fd, created


def point_latest(out: Path) -> str:
    """Make ``latest`` next to ``out`` point at it: a relative symlink, replaced atomically;
    where symlinks are not allowed, a text file holding the run directory's name.

    Returns how: ``"symlink"``, ``"text pointer"`` or ``"unchanged (...)"``.
    """
    latest = out.parent / "latest"
    tmp_link = out.parent / f".latest.{os.getpid()}-link.tmp"
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


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: the file(s) it names and the cause, e.g.
    ``runs/x/weights.npz: No space left on device``."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.EFBIG:
        cause += " (the file-size limit, ulimit -f, was reached)"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause += " (disk full or quota reached)"
    if exc.filename is None:
        cache = _numba_cache_write(exc)
        return cause if cache is None else f"{cache}: {cause}"
    where = str(exc.filename) + ("" if exc.filename2 is None else f" -> {exc.filename2}")
    return f"{where}: {cause}"


def describe_internal_error(exc: Exception) -> str:
    """One line for an exception no handler expected: a bug of ours, not the user's mistake.

    The commands end with this rather than a traceback, naming the exception and how to get
    the traceback for a report; with the environment variable ``PROPENSITY_DEBUG`` set (to
    anything non-empty) ``exc`` is raised again instead, traceback and all.
    """
    if os.environ.get("PROPENSITY_DEBUG"):
        raise exc
    text = " ".join(str(exc).split())
    return (f"internal error ({type(exc).__name__}{': ' + text if text else ''}); this is a "
            "bug: please report it with the command, PROPENSITY_DEBUG=1 shows the traceback")


def _numba_cache_write(exc: BaseException) -> str | None:
    """Where numba was writing its compile cache when ``exc`` was raised (a full disk hits the
    first compile of a fresh install there), or None when ``exc`` did not come from it."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.replace("\\", "/").endswith("numba/core/caching.py"):
            cache_dir = os.environ.get("NUMBA_CACHE_DIR")
            return ("numba's compile cache (" + (cache_dir or "__pycache__ beside nn_core/"
                                                 "kernels.py") + ")")
        tb = tb.tb_next
    return None


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose command-line errors are one line,
    ``PROG: error: MESSAGE (see PROG --help)``, exit status 2, instead of the usage text and
    the message; with deprecated spellings of options (:meth:`add_deprecated_alias`) and of
    a positional argument (:meth:`add_deprecated_positional`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deprecated: dict[str, str] = {}  # old spelling -> new, in the help's note
        self._required: list[argparse.Action] = []  # required, but an alias may stand in
        self._positional: tuple[str, str, str] | None = None  # dest, option, metavar

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")

    def add_deprecated_alias(self, old: str, new: str) -> None:
        """Accept the option ``old`` as a deprecated spelling of the option ``new``.

        ``old`` takes the same values (type, choices, number of arguments) and sets the same
        destination as ``new``; using it prints one line on stderr,
        ``PROG: OLD is deprecated; use NEW``. ``--help`` lists ``new`` only, and a note at
        its end names the old spellings. A required ``new`` is satisfied by ``old`` too.
        """
        target = self._option_string_actions[new]
        if target.required:
            target.required = False
            self._required.append(target)
        self.add_argument(old, action=_DeprecatedAlias, target=target, help=argparse.SUPPRESS)
        self._deprecated[old] = new

    def add_deprecated_positional(self, dest: str, option: str, metavar: str) -> None:
        """Accept an optional positional argument ``METAVAR`` as the deprecated form of the
        option ``option`` (which keeps its destination). Giving both is refused; using the
        positional prints ``PROG: the positional METAVAR is deprecated; use OPTION METAVAR``.
        ``dest`` is the positional's own destination (removed from the parsed namespace).
        """
        target = self._option_string_actions[option]
        if target.required:
            target.required = False
            self._required.append(target)
        self.add_argument(dest, nargs="?", type=target.type, default=None,
                          help=argparse.SUPPRESS)
        self._positional = (dest, option, metavar)
        self._deprecated[f"positional {metavar}"] = f"{option} {metavar}"

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if self._positional is not None and hasattr(ns, self._positional[0]):
            dest, option, metavar = self._positional
            value = getattr(ns, dest)
            delattr(ns, dest)
            target = self._option_string_actions[option]
            if value is not None:
                if getattr(ns, target.dest) is not None:
                    self.error(f"give {option} or the positional {value} (its deprecated "
                               "form), not both")
                self.deprecated(f"the positional {metavar}", f"{option} {metavar}")
                setattr(ns, target.dest, value)
        missing = [a.option_strings[0] for a in self._required
                   if getattr(ns, a.dest, None) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return ns, extras

    def deprecated(self, old: str, new: str) -> None:
        """Print ``PROG: OLD is deprecated; use NEW`` on stderr (one line)."""
        print(f"{self.prog}: {old} is deprecated; use {new}", file=sys.stderr)

    @contextlib.contextmanager
    def _as_documented(self):
        """Within the block, the options that an alias may stand in for are required again
        (so the usage line shows them so) and the epilog ends with the old spellings."""
        epilog = self.epilog
        if self._deprecated:
            note = "; ".join(f"{old} (use {new})" for old, new in self._deprecated.items())
            self.epilog = ((epilog + " ") if epilog else "") + \
                f"Deprecated spellings, still accepted: {note}."
        for action in self._required:
            action.required = True
        try:
            yield
        finally:
            self.epilog = epilog
            for action in self._required:
                action.required = False

    def format_help(self) -> str:
        with self._as_documented():
            return super().format_help()

    def format_usage(self) -> str:
        with self._as_documented():
            return super().format_usage()


class _DeprecatedAlias(argparse.Action):
    """The action of a deprecated option spelling: the target option's action, after one
    line on stderr (:meth:`OneLineArgumentParser.add_deprecated_alias`)."""

    def __init__(self, option_strings, dest, target: argparse.Action, help=None) -> None:
        super().__init__(option_strings, target.dest, nargs=target.nargs, const=target.const,
                         default=argparse.SUPPRESS, type=target.type, choices=target.choices,
                         help=help, metavar=target.metavar)
        self.target = target
        self.new = target.option_strings[0]

    def __call__(self, parser, namespace, values, option_string=None):
        parser.deprecated(option_string, self.new)
        self.target(parser, namespace, values, self.new)



class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` that shows each option's default once: ``(default: X)`` is appended where
    the help text does not already say its default, and left out where there is none to
    show (``None``, a switch's ``False``). Tuples read as the flag takes them (``64,32``;
    ``none`` when empty), paths as given."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None
                or default is argparse.SUPPRESS or isinstance(default, bool)):
            return text
        if isinstance(default, tuple | list):
            shown = ",".join(map(str, default)) or "none"
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        # argparse shows no default for an option without help text: give it an empty one.
        if action.help is None and action.option_strings:
            action = argparse.Action(action.option_strings, action.dest, action.nargs,
                                     action.const, action.default, action.type,
                                     action.choices, action.required, " ", action.metavar)
        return super()._format_action(action)


def options_given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options written in ``argv`` (``--opt value``, ``--opt=value``
    and the unambiguous abbreviations argparse accepts), defaults and a ``--config`` file's
    settings aside: what the user typed. Call after ``parser.parse_args(argv)`` succeeded."""
    actions = parser._option_string_actions  # argparse's own table of option strings
    given = set()
    for token in argv:
        if token == "--":
            break
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        matches = {a.dest for option, a in actions.items() if option == name} or \
            {a.dest for option, a in actions.items() if option.startswith(name)}
        if len(matches) == 1:
            given |= matches
    return given

@contextlib.contextmanager
def stdout_may_close():
    """Within the block, a closed standard output (``command | head -1``) ends the printing
    quietly: the rest of the output is discarded (stdout goes to ``/dev/null``, so that the
    flush at exit raises nothing either) and the program goes on."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it cleans up as for Ctrl-C."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up
    raise Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) where
    the main thread is, so a command's ``except KeyboardInterrupt`` clean-up also runs on
    ``kill``; the previous handler is restored afterwards. Exit status 143 (128 + 15) is the
    convention for it. Outside the main thread (where signals cannot be handled) it does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
