"""The docs cannot rot silently: code references, relative links and math markup are checked.

Scanned: every Markdown file under ``docs/`` and the top-level ``README.md``.

* A **code reference** is ``path/to/file.py: name`` or ``path/to/file.py: Class.method``
  (see ``REFERENCE``): a path relative to the repository root, a colon, one space, and a
  dotted name. The file must exist and, parsed with ``ast``, define the name: a top-level
  function, class or assignment, then (for each further part) a method, nested class or
  class attribute of that class, or an attribute assigned as ``self.<name>`` in one of its
  methods. Imports do not count: a reference points at the definition. Fenced code blocks
  are skipped (they hold command output such as ``train.py: error: ...``).
* A **relative link** ``[text](target)`` must point at an existing file or directory
  (relative to the Markdown file), and a ``#fragment`` into a Markdown file must match one
  of its headings, slugged as GitHub does.
* **Math** must render on GitHub: ``$$`` display delimiters balanced and each display block
  set off by blank lines, no underscore inside ``\\text{...}``, and environments such as
  ``\\begin{align}`` only inside a ``$$`` block.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
IDS = [str(p.relative_to(ROOT)) for p in MARKDOWN]

#: ``path/to/file.py: name`` or ``path/to/file.py: Class.method`` (any number of dots).
REFERENCE = re.compile(
    r"(?<![\w./-])((?:[\w.-]+/)*[\w-]+\.py): ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
)
#: Anything that looks like the start of a reference; each must be parsed by REFERENCE.
REFERENCE_LIKE = re.compile(r"\.py:")
#: ``[text](target)`` and ``![alt](target)``, with an optional "title".
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
FENCE = re.compile(r"^\s*(```|~~~)")


# --------------------------------------------------------------------------- text helpers


def outside_fences(text: str) -> list[str]:
    """The lines of ``text`` with fenced code blocks blanked (line numbers are kept)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


# --------------------------------------------------------------------------- code references


def _scope(body: list[ast.stmt]) -> dict[str, ast.AST | None]:
    """Names a block of statements defines: functions and classes (with their nodes) and
    assigned names (``None``: nothing can be looked up inside them)."""
    names: dict[str, ast.AST | None] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.setdefault(leaf.id, None)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            # Definitions under `if TYPE_CHECKING:`, `try: ... except ImportError:` etc.
            inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                inner.extend(handler.body)
            for name, sub in _scope(inner).items():
                names.setdefault(name, sub)
    return names


def _members(cls: ast.ClassDef) -> dict[str, ast.AST | None]:
    """Methods, nested classes and attributes of a class, including ``self.x = ...``."""
    names = _scope(cls.body)
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(method):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if (
                        isinstance(leaf, ast.Attribute)
                        and isinstance(leaf.value, ast.Name)
                        and leaf.value.id == "self"
                    ):
                        names.setdefault(leaf.attr, None)
    return names


@cache
def _module_scope(path: Path) -> dict[str, ast.AST | None]:
    return _scope(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)


def resolve(path: str, name: str, root: Path = ROOT) -> str | None:
    """``None`` when ``path`` exists under ``root`` and defines ``name``; else the problem."""
    file = root / path
    if not file.is_file():
        return f"{path}: no such file"
    scope = _module_scope(file.resolve())
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if part not in scope:
            where = path if depth == 0 else f"{path}: {'.'.join(parts[:depth])}"
            return f"{where} defines no {part!r}"
        node = scope[part]
        if depth + 1 < len(parts):
            if not isinstance(node, ast.ClassDef):
                return f"{path}: {'.'.join(parts[: depth + 1])} is not a class"
            scope = _members(node)
    return None


def check_references(text: str, root: Path = ROOT) -> tuple[list[tuple[str, str]], list[str]]:
    """All code references in ``text`` (outside fenced code) and the problems found.

    Returns
    -------
    refs : list of (path, name)
    problems : list of str
        ``"line N: ..."`` for each reference that does not resolve, and for each ``.py:``
        that is not the start of a well-formed reference (e.g. a missing space).
    """
    refs, problems = [], []
    for number, line in enumerate(outside_fences(text), start=1):
        parsed_ends = set()
        for match in REFERENCE.finditer(line):
            path, name = match.group(1), match.group(2)
            refs.append((path, name))
            parsed_ends.add(match.end(1))
            problem = resolve(path, name, root)
            if problem is not None:
                problems.append(f"line {number}: `{path}: {name}`: {problem}")
        for match in REFERENCE_LIKE.finditer(line):
            if match.start() + 3 not in parsed_ends:
                snippet = line[max(0, match.start() - 30) : match.end() + 20]
                problems.append(
                    f"line {number}: not a well-formed `path.py: name` reference: {snippet!r}"
                )
    return refs, problems


# --------------------------------------------------------------------------- links


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text (repeated slugs get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in outside_fences(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def check_links(doc: Path) -> tuple[list[str], list[str]]:
    """Relative links of the Markdown file ``doc`` and the problems found (``"line N: ..."``)."""
    text = doc.read_text(encoding="utf-8")
    targets, problems = [], []
    for number, line in enumerate(outside_fences(text), start=1):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group(1)
            if re.match(r"[A-Za-z][\w+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto: ...
            targets.append(target)
            path_part, _, fragment = target.partition("#")
            file = (doc.parent / path_part) if path_part else doc
            if not file.exists():
                problems.append(f"line {number}: {target}: {path_part} does not exist")
                continue
            if fragment and file.suffix == ".md":
                if fragment not in anchors(file.read_text(encoding="utf-8")):
                    problems.append(f"line {number}: {target}: no heading #{fragment} there")
    return targets, problems


# --------------------------------------------------------------------------- math


def check_math(text: str) -> list[str]:
    """Markup that GitHub's math renderer gets wrong (see the module docstring)."""
    problems = []
    lines = outside_fences(text)
    in_display = False
    opened = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        for match in re.finditer(r"\\text\{([^}]*)\}", line):
            if "_" in match.group(1):
                problems.append(f"line {number}: underscore inside \\text{{}}: {match.group(0)}")
        if re.search(r"\\begin\{", line) and not in_display:
            problems.append(f"line {number}: \\begin{{...}} outside a $$ display block")
        if stripped.count("$$") % 2 == 0 and not (stripped == "$$"):
            if stripped.startswith("$$") and stripped.endswith("$$") and len(stripped) > 4:
                before = lines[number - 2].strip() if number > 1 else ""
                after = lines[number].strip() if number < len(lines) else ""
                if before or after:
                    problems.append(f"line {number}: a $$ display needs blank lines around it")
            continue
        if stripped != "$$":
            problems.append(f"line {number}: put each $$ delimiter on a line of its own")
            continue
        if not in_display:
            before = lines[number - 2].strip() if number > 1 else ""
            if before:
                problems.append(f"line {number}: a $$ display needs a blank line before it")
            in_display, opened = True, number
        else:
            after = lines[number].strip() if number < len(lines) else ""
            if after:
                problems.append(f"line {number}: a $$ display needs a blank line after it")
            in_display = False
    if in_display:
        problems.append(f"line {opened}: $$ display block is never closed")
    return problems


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("doc", MARKDOWN, ids=IDS)
def test_code_references_resolve(doc):
    _, problems = check_references(doc.read_text(encoding="utf-8"))
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", MARKDOWN, ids=IDS)
def test_relative_links_resolve(doc):
    _, problems = check_links(doc)
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", MARKDOWN, ids=IDS)
def test_math_renders_on_github(doc):
    problems = check_math(doc.read_text(encoding="utf-8"))
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_math_and_architecture_pages_are_tied_to_the_code():
    """The pattern really finds the references these pages are built on (a pattern that
    matched nothing would make the tests above pass vacuously)."""
    for page, files in {
        "math.md": {"nn_core/reference.py", "nn_core/losses.py", "nn_core/optim.py",
                    "nn_core/gradcheck.py", "nn_core/activations.py", "nn_core/kernels.py"},
        "architecture.md": {"nn_core/testing.py", "nn_core/backends.py", "propensity/train.py",
                            "propensity/predict.py", "features/events.py",
                            "features/tabular.py"},
    }.items():
        refs, _ = check_references((ROOT / "docs" / page).read_text(encoding="utf-8"))
        assert len(refs) >= 40, (page, len(refs))
        assert files <= {path for path, _ in refs}, (page, files - {path for path, _ in refs})
    refs, _ = check_references((ROOT / "docs" / "math.md").read_text(encoding="utf-8"))
    assert ("nn_core/optim.py", "Optimizer.step") in refs
    assert ("nn_core/reference.py", "backward") in refs


def test_reference_checker_reports_made_up_names():
    text = "\n".join([
        "Real: `nn_core/optim.py: Optimizer.step`, `nn_core/network.py: MLP.theta`,",
        "`nn_core/kernels.py: optimizer_step`, `nn_core/activations.py: LEAKY_SLOPE`.",
        "Made up: `nn_core/reference.py: no_such_function`,",
        "`nn_core/no_such_file.py: forward`, `nn_core/optim.py: Optimizer.no_such_method`,",
        "`nn_core/optim.py: learning_rate.inner` and a missing space `nn_core/reference.py:loss`.",
        "```",
        "train.py: error: output of a command, inside a fence, is not a reference",
        "```",
    ])
    refs, problems = check_references(text)
    assert len(refs) == 8
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "line 1" not in joined and "line 2" not in joined
    assert "defines no 'no_such_function'" in joined
    assert "nn_core/no_such_file.py: no such file" in joined
    assert "Optimizer defines no 'no_such_method'" in joined
    assert "learning_rate is not a class" in joined
    assert "not a well-formed" in joined and "line 5" in joined


def test_imports_do_not_count_as_definitions():
    # nn_core/__init__.py imports MLP; the definition is in network.py.
    assert resolve("nn_core/__init__.py", "MLP") is not None
    assert resolve("nn_core/network.py", "MLP") is None


def test_link_checker_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Export / single-row latency\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# A heading\n\n"
        "[ok](other.md), [ok](other.md#export--single-row-latency), [ok](#a-heading),\n"
        "[web](https://example.org/missing.md), `[code](not-a-link.md)`\n"
        "[gone](missing.md), [bad anchor](other.md#no-such-heading), [self](#nope)\n"
    )
    targets, problems = check_links(doc)
    assert len(targets) == 6
    assert len(problems) == 3, problems
    assert any("missing.md does not exist" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("#nope" in p for p in problems)


def test_github_slugs():
    assert github_slug("Export / single-row latency") == "export--single-row-latency"
    assert github_slug("3. Features (one row per user, all finite float64)") == (
        "3-features-one-row-per-user-all-finite-float64"
    )
    assert github_slug("Reading: `read_events(path)`") == "reading-read_eventspath"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_math_checker_reports_markup_github_mis_renders():
    good = "Text $x_1$.\n\n$$\ny = f(x)\n$$\n\nMore text.\n"
    assert check_math(good) == []
    assert check_math("Text\n$$\ny\n$$\n\n")  # no blank line before
    assert check_math("Text\n\n$$\ny\n")  # never closed
    assert check_math("$\\text{sample_weight}$\n")
    assert check_math("\\begin{align} a &= b \\end{align}\n")
    assert check_math("\n$$\n\\begin{aligned} a \\end{aligned}\n$$\n\n") == []
