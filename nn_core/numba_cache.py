"""Numba's on-disk cache of the kernels, kept fresh when a rule changes.

Numba keys a cached function on the content of the one file that defines it: a kernel of
``nn_core/kernels.py`` is reloaded from the cache as long as ``kernels.py`` is unchanged.
But the kernels compile in rules written elsewhere, once (``nn_core/activations.py``,
``losses.py``, ``optim.py``, ``dropout.py``): edit the sigmoid alone and every cache on
disk would go on serving kernels with the old sigmoid, while the NumPy reference had the
new one. :class:`RuleFilesLocator` stamps the kernels' cache with the contents of all
those files (:data:`RULE_FILES`), so a change in any of them makes Numba compile afresh,
exactly as a change in ``kernels.py`` does. Where the cache lives is unchanged
(``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source, else the user's cache
directory: Numba's own choice).

This goes through Numba internals (``numba.core.caching.CacheImpl._locator_classes``,
``_CacheImpl`` in older releases, and the locators' four methods); where they move,
:func:`install` does nothing and the kernels are cached as Numba does by itself (stamped
by ``kernels.py`` alone; ``tests/nn_core/test_numba_cache.py`` then fails).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: The files whose code a kernel of ``nn_core/kernels.py`` compiles in.
RULE_FILES: tuple[Path, ...] = tuple(
    _HERE / name for name in ("kernels.py", "activations.py", "losses.py", "optim.py",
                              "dropout.py")
)


def rule_files_stamp(files: tuple[Path, ...] = RULE_FILES) -> str:
    """SHA-256 over the names and contents of ``files``: the freshness stamp of the
    kernels' cache (any change to any of them gives another stamp)."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


class RuleFilesLocator:
    """A Numba cache locator for the functions of ``nn_core/kernels.py``: the place and
    names of the locator Numba would pick, the freshness stamp :func:`rule_files_stamp`.

    Numba asks each locator class in turn (``from_function``); this one answers only for
    ``kernels.py`` and hands every other file to the next class.
    """

    #: The locator classes Numba tries after this one (set by :func:`install`).
    fallbacks: tuple = ()

    def __init__(self, inner) -> None:
        self._inner = inner

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve() != RULE_FILES[0]:
            return None
        for other in cls.fallbacks:
            inner = other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    def get_source_stamp(self) -> str:
        return rule_files_stamp()


def install() -> bool:
    """Put :class:`RuleFilesLocator` first among Numba's cache locators (once).

    Call it before ``kernels.py`` creates its cached dispatchers. Returns whether it is in
    place (False where Numba's internals moved).
    """
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):
        return False
    if RuleFilesLocator not in classes:
        RuleFilesLocator.fallbacks = tuple(classes)
        classes.insert(0, RuleFilesLocator)
    return True
