"""An nn_core module as an older commit had it, for tests that check what older programs
do with files written today (tests/nn_core/test_rank_encoding.py, test_stored_ranges.py)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def module_at(commit: str, path: str = "nn_core/preprocessing.py") -> ModuleType:
    """``path`` of this repository at ``commit``, executed as a module of the ``nn_core``
    package (its relative imports take today's modules); skips the test where git or the
    history is not available (an exported tree)."""
    git = shutil.which("git")
    shown = subprocess.run([git, "show", f"{commit}:{path}"], cwd=REPO, capture_output=True,
                           text=True) if git else None
    if shown is None or shown.returncode != 0:
        pytest.skip("the repository's history is not available")
    name = f"nn_core._{Path(path).stem}_at_{commit}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "nn_core"
    exec(compile(shown.stdout, f"{Path(path).stem}_at_{commit}.py", "exec"), module.__dict__)
    return module
