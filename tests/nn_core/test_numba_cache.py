"""The kernels' Numba cache is stamped by every rule file (nn_core/numba_cache.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nn_core import numba_cache

ROOT = Path(__file__).resolve().parents[2]

# Predict 300 rows with a tanh float64 network (sigmoid output); print the prediction
# kernel's cache hits and misses in this process and the mean prediction.
SCRIPT = """
import numpy as np
from nn_core import MLP, kernels

blocks = kernels.entry("blocks", kernels.activation_index("tanh"))
X = np.random.default_rng(0).normal(size=(300, 5))
p = MLP(5, hidden=(4,), activation="tanh", dtype="float64", seed=1).predict_proba(X)
print(sum(blocks.stats.cache_hits.values()), sum(blocks.stats.cache_misses.values()),
      repr(float(p.mean())))
"""
SIGMOID = "return np.maximum(E, Z >= 0) / (1 + E)"


def test_locator_is_installed_for_the_kernels_only():
    from nn_core import kernels

    assert numba_cache.install()  # fails where Numba's internals moved: look again
    locator = kernels.apply_output._cache._impl.locator
    assert isinstance(locator, numba_cache.RuleFilesLocator)
    assert locator.get_source_stamp() == numba_cache.rule_files_stamp()
    this = test_locator_is_installed_for_the_kernels_only
    assert numba_cache.RuleFilesLocator.from_function(this, __file__) is None


def test_stamp_follows_each_rule_file(tmp_path):
    copies = []
    for path in numba_cache.RULE_FILES:
        copies.append(tmp_path / path.name)
        shutil.copyfile(path, copies[-1])
    files = tuple(copies)
    before = numba_cache.rule_files_stamp(files)
    assert numba_cache.rule_files_stamp(files) == before
    for path in files:
        text = path.read_text()
        path.write_text(text + "\n# changed\n")
        assert numba_cache.rule_files_stamp(files) != before, path.name
        path.write_text(text)
    assert numba_cache.rule_files_stamp(files) == before


@pytest.mark.slow
def test_changed_rule_is_compiled_not_loaded_stale(tmp_path):
    """Edit the sigmoid in a copy of nn_core (kernels.py untouched): the next run compiles
    the kernel afresh and predicts with the new rule instead of loading the old one."""
    shutil.copytree(ROOT / "nn_core", tmp_path / "nn_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(tmp_path)}

    def run() -> tuple[int, int, float]:
        r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, check=True)
        hits, misses, mean = r.stdout.split()
        return int(hits), int(misses), float(mean)

    first = run()
    assert first[:2] == (0, 1)  # compiled
    second = run()
    assert second == (1, 0, first[2])  # loaded from the cache
    activations = tmp_path / "nn_core" / "activations.py"
    text = activations.read_text()
    assert text.count(SIGMOID) == 1
    activations.write_text(text.replace(SIGMOID, "return 0.5 * (np.maximum(E, Z >= 0) / (1 + E))"))
    third = run()
    assert third[:2] == (0, 1)  # compiled again
    assert third[2] == pytest.approx(0.5 * first[2], rel=1e-12)
