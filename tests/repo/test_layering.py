"""The packages' layering, read from the source: nn_core <- features <- propensity (the CLIs).

Every ``import`` and ``from ... import`` statement is read with ``ast``, those inside
functions included (a lazy import is still a dependency). Two rules:

* ``nn_core`` imports nothing from ``features`` or ``propensity`` (the command lines), and
  ``features`` nothing from ``propensity``: layers point down;
* no import cycle, of any length, among the project's modules.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nn_core", "features", "propensity")
SCRIPTS = ("train", "predict")  # the checkout's launchers


def _modules() -> dict[str, Path]:
    """Project module name -> file (packages' ``__init__`` under the package's name)."""
    found = {name: ROOT / f"{name}.py" for name in SCRIPTS}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` names the module pkg.sub when there is one.
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                          for a in node.names]
        else:
            continue
        for candidate in candidates:
            # ``import a.b.c`` depends on the longest project module it names.
            parts = candidate.split(".")
            for k in range(len(parts), 0, -1):
                if ".".join(parts[:k]) in modules:
                    targets.add(".".join(parts[:k]))
                    break
    targets.discard(name)
    return targets


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


def test_the_scan_sees_the_imports_it_must():
    """Not vacuous: known edges, a relative one and a function-local one among them."""
    assert "nn_core.kernels" in GRAPH["nn_core.network"]  # from . import kernels
    assert "nn_core.network" in GRAPH["nn_core.modeldir"]  # from .network import MLP
    assert "nn_core.preprocessing" in GRAPH["features.tabular"]  # from nn_core.x import y
    assert "features.events" in GRAPH["features.synthetic"]
    assert "propensity.train" in GRAPH["train"]  # the launcher at the repository root


def test_layers_point_down():
    below = {"nn_core": {"nn_core"}, "features": {"nn_core", "features"},
             "propensity": {"nn_core", "features", "propensity"}}
    upward = {
        name: sorted(t for t in targets if t.split(".")[0] not in below[name.split(".")[0]])
        for name, targets in GRAPH.items()
        if name.split(".")[0] in below
    }
    assert {name: up for name, up in upward.items() if up} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
