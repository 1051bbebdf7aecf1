"""The command-line programs: ``propensity.train``, ``propensity.predict``, ``propensity.serve``.

The top layer: they parse arguments and call ``features`` and ``nn_core``, which import nothing
from here. Installed as ``propensity-train``, ``propensity-predict`` and ``propensity-serve``;
from a checkout, ``python train.py``, ``python predict.py`` and ``python serve.py`` run the
same ``main``. Their one error policy is :func:`run_command`'s.
"""

import sys
from collections.abc import Callable
from pathlib import Path


def program_name(script: str) -> str:
    """The name a command's messages start with: ``propensity-train`` when started as the
    installed command, else ``train.py`` (``python train.py``, ``python -m propensity.train``,
    or ``main`` called from Python)."""
    started_as = Path(sys.argv[0]).name if sys.argv else ""
    return started_as if started_as == f"propensity-{script}" else f"{script}.py"


def run_program(module: str) -> int:
    """Import ``module`` and return its ``main()``, for a command started as a program
    (``python predict.py``), with the garbage collector kept off the imported libraries.

    The imports (NumPy, pandas, Numba: some 150,000 objects that live until the process
    exits) run with the collector off, and are then frozen out of its work (``gc.freeze``):
    otherwise each full collection during the run, and the last one at exit, walks them
    all, about 0.1-0.2 s of CPU on a one-row file. Objects made afterwards are collected
    as usual. Not for ``main`` called from Python (a test process would never collect what
    it had made before). Freed memory is also kept for reuse (:func:`keep_freed_memory`),
    and OpenBLAS's idle threads sleep at once (``OPENBLAS_THREAD_TIMEOUT=4``, unless set):
    by default each one spins for 2**28 cycles (about 0.1 s of a core) after it starts and
    after each job, which the commands never gain from, since their kernels hold BLAS to one
    thread (``nn_core.backends.threads_limited``); NumPy's and SciPy's OpenBLAS each burnt
    0.1 s that way in ``predict.py`` (SciPy's while the first chunks are read).
    """
    import gc
    import importlib
    import os

    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # read when OpenBLAS loads
    keep_freed_memory()
    gc.disable()
    try:
        main = importlib.import_module(module).main
    finally:
        gc.enable()
    gc.freeze()
    return main()


def keep_freed_memory() -> None:
    """Have glibc's ``malloc`` keep freed memory for the next allocation rather than give it
    back to the system at once (nothing happens with another C library).

    A command working chunk by chunk allocates and frees the same large NumPy arrays over
    and over; by default glibc maps each block of 32 MiB or less afresh and returns it
    when freed, so every reuse pays a page fault per 4 KiB (predict.py on 1 M rows: about
    75,000 faults and 0.1-0.3 s of system CPU). Blocks up to 32 MiB (``M_MMAP_THRESHOLD``,
    glibc's maximum) now come from the heap, which is trimmed only beyond 256 MiB free
    (``M_TRIM_THRESHOLD``): the peak memory is the same, the memory held between chunks
    a little higher.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


class UsageError(ValueError):
    """A command-line mistake: one line on stderr, exit status 2 (argparse's convention for
    a bad command line; :func:`run_command` reports it so for every command)."""


def check_threads(threads: int | None) -> None:
    """Refuse a ``--threads`` outside ``[1, N]``, N the threads Numba may use here
    (``NUMBA_NUM_THREADS``: the machine's cores unless set); None (all of them) passes.

    Raises
    ------
    UsageError
        ``--threads must be in [1, N] (this machine), got T``.
    """
    if threads is None:
        return
    from numba import config as numba_config

    most = numba_config.NUMBA_NUM_THREADS
    if not 1 <= threads <= most:
        raise UsageError(f"--threads must be in [1, {most}] (this machine), got {threads}")


def print_error(script: str, message, status: int) -> int:
    """Print ``PROG: error: MESSAGE`` on stderr, one line (``PROG`` as ``program_name``);
    return ``status``, the exit status."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{program_name(script)}: error: {text}", file=sys.stderr)
    return status


def run_command(
    script: str,
    run: Callable[[], object],
    *,
    source: object,
    nothing_written: str,
    usage_errors: tuple[type[BaseException], ...] = (),
    data_errors: tuple[type[BaseException], ...] = (),
    os_error: Callable[[OSError], OSError] | None = None,
) -> int:
    """Call ``run()`` and turn what it raises into one line on stderr and an exit status.

    The one error policy of ``train``, ``predict`` and ``serve``: a usage mistake
    (:class:`UsageError`, ``usage_errors``) exits 2; bad data or a bad model file
    (``features.tabular.DataError``, ``nn_core.io.ModelFileError``, ``ValueError``,
    ``data_errors``), text that is not UTF-8 or not CSV (named as ``source``), an OS error
    (passed through ``os_error`` first, which may name the user's path instead of a
    temporary one), too little memory or recursion too deep exit 1; Ctrl-C 130, SIGTERM 143
    (``nothing_written`` says what was not written); anything else is a bug of ours: one
    line naming it (``nn_core.io.describe_internal_error``), exit 1.

    Parameters
    ----------
    script : {"train", "predict", "serve"}
        The command, for ``program_name``.
    run : callable
        The command's work.

    Returns
    -------
    int
        0 when ``run`` returned.
    """
    import csv

    from features.tabular import DataError
    from nn_core.io import ModelFileError, Terminated, describe_internal_error, describe_os_error

    try:
        run()
    except (UsageError, *usage_errors) as exc:
        return print_error(script, exc, 2)
    except UnicodeDecodeError as exc:
        return print_error(script, f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason})",
                           1)
    except (DataError, ModelFileError, ValueError, *data_errors) as exc:
        return print_error(script, exc, 1)  # ValueError: bad values found by the libraries
    except csv.Error as exc:
        return print_error(script, f"{source}: cannot read it as CSV: {exc}", 1)
    except BrokenPipeError:  # e.g. `... | head` closed the pipe: nothing more can be said
        sys.stderr.close()
        return 1
    except OSError as exc:
        return print_error(script, describe_os_error(os_error(exc) if os_error else exc), 1)
    except MemoryError as exc:
        return print_error(script, f"out of memory ({exc or 'allocation failed'}); "
                           f"{nothing_written}", 1)
    except RecursionError as exc:
        return print_error(script, exc, 1)
    except Terminated:
        print(f"{program_name(script)}: terminated (SIGTERM); {nothing_written}",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{program_name(script)}: interrupted; {nothing_written}", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: one line, not a traceback
        return print_error(script, describe_internal_error(exc), 1)
    return 0
