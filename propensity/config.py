"""Settings from a file: ``--config FILE`` (JSON or TOML) holds any command-line setting.

A config file is one object (a JSON object, or a TOML document's top-level table) whose
keys are the program's flag names without the leading dashes, with dashes or underscores
(``batch-size`` or ``batch_size``), plus the settings a program declares as file-only
(``train.py``: ``ranges``, the valid range of each numeric column). Values are what the
flag takes, as JSON/TOML values: a number, a string, ``true``/``false`` for a switch, a
list for a comma-separated or repeatable flag (``"hidden": [64, 32]`` or ``"64,32"``);
``null`` (JSON only) is the flag's default where that default is "none".

Precedence: a flag on the command line overrides the file, which overrides the defaults.
A key that is no setting, a value of the wrong type and a file that is not JSON/TOML are
refused in one line naming the file and key, exit status 1 (a bad file, as a bad data file;
the role files of earlier versions were refused so too); an old flag spelling used as a key
works and prints the same deprecation line as the flag.

TOML needs Python 3.11 (``tomllib``) or the ``tomli`` package; without either a ``.toml``
file is refused in one line (JSON always works): the runtime dependencies stay numpy,
numba, scipy, pandas and matplotlib.

:func:`resolved` gives every setting of a parsed command line (defaults included) as JSON,
the ``config.json`` of a run directory; ``--config`` that file reproduces the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nn_core.io import OneLineArgumentParser

#: Flags that are not settings of a run: they say where the settings or the results go.
NOT_SETTINGS = ("help", "config", "output")


class ConfigError(ValueError):
    """A config file that cannot be used (its message names the file and key)."""


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """The key/value object of a JSON or TOML file (TOML when the name ends in ``.toml``),
    UTF-8 text with or without a byte-order mark (as the CSV readers take it).

    Raises
    ------
    ConfigError
        Naming the file when it cannot be read, is not JSON/TOML or not an object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as editors on Windows write
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason})") from None
    if path.suffix.lower() == ".toml":
        toml = _toml_module(path)
        try:
            return toml.loads(text)
        except toml.TOMLDecodeError as exc:
            raise ConfigError(f"--config {path}: not valid TOML: "
                              f"{' '.join(str(exc).split())}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid JSON: {exc.msg} at line "
                          f"{exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting too deep
        raise ConfigError(f"--config {path}: not valid JSON: "
                          f"{' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path}: must be a JSON object {{\"flag-name\": value}}")
    return raw


def _toml_module(path: Path):
    """``tomllib`` (Python 3.11+) or ``tomli``; ConfigError naming ``path`` without them."""
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError(f"--config {path}: TOML needs Python 3.11+ or the tomli "
                              "package; give the settings as JSON instead") from None
    return tomllib


def parse_args(parser: OneLineArgumentParser, argv: Sequence[str] | None = None,
               file_only: dict[str, Callable[[Any, Path], Any]] | None = None
               ) -> argparse.Namespace:
    """Parse ``argv`` with ``parser``, taking defaults from its ``--config`` file if given.

    Parameters
    ----------
    parser : OneLineArgumentParser
        With a ``--config`` option. Its errors are one line, exit status 2; the file's
        problems one line ``PROG: error: --config FILE: ...``, exit status 1.
    argv : sequence of str, optional
        Default ``sys.argv[1:]``.
    file_only : dict, optional
        Keys allowed in the file that are no flag, each with its check
        ``(value, path) -> value`` (raising ``ValueError`` with a message). The parser must
        declare their default with ``set_defaults``.
    """
    file_only = file_only or {}
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=parser.allow_abbrev)
    first.add_argument("--config", type=Path)
    known, _ = first.parse_known_args(argv)
    if known.config is not None:
        try:
            values = from_file(parser, known.config, file_only)
        except ConfigError as exc:
            parser.exit(1, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def from_file(parser: OneLineArgumentParser, path: Path,
              file_only: dict[str, Callable[[Any, Path], Any]]) -> dict[str, Any]:
    """The settings of the file at ``path``, by destination, converted as their flags'."""
    actions = _setting_actions(parser)
    values: dict[str, Any] = {}
    for key, value in read_file(path).items():
        name = str(key).replace("_", "-")
        dest = name.replace("-", "_")
        if dest in file_only:
            try:
                values[dest] = None if value is None else file_only[dest](value, path)
            except ValueError as exc:
                raise ConfigError(f"--config {path}: key {key!r}: {exc}") from None
            continue
        action = parser._option_string_actions.get(f"--{name}")
        if action is None or action.dest in NOT_SETTINGS[:2] or action.dest not in actions:
            raise ConfigError(f"--config {path}: unknown key {key!r} (keys are the flag "
                              f"names of {parser.prog})")
        new = actions[action.dest].option_strings[0]
        if f"--{name}" not in actions[action.dest].option_strings:  # an old spelling
            parser.deprecated(f"--config {path}: key {key!r}", repr(new[2:]))
        if action.dest in values:
            raise ConfigError(f"--config {path}: key {key!r} sets {new} a second time")
        try:
            values[action.dest] = _convert(actions[action.dest], value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"--config {path}: key {key!r}: {exc}") from None
    return values


def _setting_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The option actions of ``parser`` that hold a setting, by destination (the first one
    defined for a destination: the current spelling, not a deprecated alias)."""
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in NOT_SETTINGS[:2]:
            actions.setdefault(action.dest, action)
    return actions


def _convert(action: argparse.Action, value: Any) -> Any:
    """``value`` from a file as the flag of ``action`` would give it (same type, checks)."""
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value if action.const is True else not value
    if value is None:
        if action.default is not None:
            raise ValueError(f"null is not a value of {action.option_strings[0]}")
        return None
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if not items and action.nargs == "+":
            raise ValueError("expected at least one value")
        return [_one(action, _text(v)) for v in items]
    if isinstance(value, list):
        return _one(action, ",".join(_text(v) for v in value))
    return _one(action, _text(value))


def _text(value: Any) -> str:
    """A file's scalar as the command line would spell it (``repr`` keeps every float bit)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or string, got {str(value).lower()}")
    if isinstance(value, int | float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a number, string or list, got {value!r}")


def _one(action: argparse.Action, text: str) -> Any:
    """``text`` through the flag's type and choices."""
    if action.type in (int, float):
        try:
            value = action.type(text)
        except ValueError:
            raise ValueError(f"invalid {action.type.__name__} value: {text!r}") from None
    else:
        value = action.type(text) if action.type is not None else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def resolved(parser: argparse.ArgumentParser, args: argparse.Namespace,
             file_only: Sequence[str] = ()) -> dict[str, Any]:
    """Every setting of ``args`` (defaults included) as a JSON-able dict by destination:
    the run directory's ``config.json``. Paths are made absolute (the file reproduces the
    run from any working directory); ``--output`` and ``--config`` are left out."""
    out: dict[str, Any] = {}
    for dest in _setting_actions(parser):
        if dest not in NOT_SETTINGS:
            out[dest] = _jsonable(getattr(args, dest))
    for dest in file_only:
        out[dest] = _jsonable(getattr(args, dest, None))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
