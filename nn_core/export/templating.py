"""The template files of the exporters, and the plain substitution that fills them.

Every file under ``templates/`` is valid source of its language as it stands (C99 or
Python), so that compilers and linters read it, and holds named sections::

    /* @begin NAME */  ...  /* @end NAME */        (C)
    # @begin NAME  ...  # @end NAME                (Python)

Only section text is ever emitted; the rest of a file explains the template or makes it
compile. :func:`fill` knows three kinds of slot inside a section:

- ``@KEY@`` anywhere: replaced by text (which may span lines);
- a line holding only ``/* @KEY@ */`` or ``# @KEY@`` (after indentation): replaced by
  generated lines (text that ends in a newline, or nothing, which removes the line);
- ``NAME = ...`` at the start of a line (Python): the ``...`` becomes the value given for
  ``NAME``, so that the template still assigns every name its code uses.

The C templates spell the symbol prefix ``NAME`` (``NAME_predict``) and its capitals
``NAMEUP`` (``NAMEUP_N_INPUTS``), which keeps them compilable; :func:`with_prefix`
substitutes the export's name. No template engine: one regular expression per step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

_SECTION = re.compile(
    r"^(?:/\*|#) @begin (\w+)(?: \*/)?\n(.*?)^(?:/\*|#) @end \1(?: \*/)?\n", re.M | re.S
)
# Alternatives are tried in this order at each position, so a slot line wins over the
# ``@KEY@`` inside it.
_SLOT = re.compile(
    r"^[ \t]*(?:/\* @(?P<lines>[A-Z0-9_]+)@ \*/|# @(?P<pylines>[A-Z0-9_]+)@)[ \t]*\n"
    r"|^(?P<value>[A-Za-z_]\w*) = \.\.\.(?=\s)"
    r"|@(?P<text>[A-Z0-9_]+)@",
    re.M,
)
_PREFIX = re.compile(r"\bNAME(UP)?(?=[_.])")


@cache
def sections(filename: str) -> dict[str, str]:
    """The sections of ``templates/filename``, in file order.

    Parameters
    ----------
    filename : str
        E.g. ``"runtime.c"``.

    Returns
    -------
    dict
        Section name -> its text (the lines between the markers, each ending in a newline).

    Raises
    ------
    ValueError
        The file has no section, or a section name twice.
    """
    text = (resources.files(__package__) / "templates" / filename).read_text("utf-8")
    found = _SECTION.findall(text)
    names = [name for name, _ in found]
    if not found or len(set(names)) != len(names):
        raise ValueError(f"templates/{filename}: no sections, or a section named twice")
    return dict(found)


def section(filename: str, name: str) -> str:
    """The text of one section of ``templates/filename``."""
    return sections(filename)[name]


def with_prefix(text: str, name: str) -> str:
    """``text`` with the symbol prefix ``NAME`` spelled ``name`` and ``NAMEUP`` in capitals.

    Applied to a template before :func:`fill`, so that generated text (column names, for
    instance) is never rewritten.
    """
    return _PREFIX.sub(lambda m: name.upper() if m.group(1) else name, text)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace every slot of ``text`` (see the module docstring) in one pass.

    Parameters
    ----------
    text : str
        A template section.
    values : mapping
        Slot key -> text. One key serves every slot of that name.

    Returns
    -------
    str

    Raises
    ------
    KeyError
        A slot of the template has no value.
    ValueError
        A value fills no slot, or a line slot's value does not end in a newline: both mean
        that the template and its generator disagree.
    """
    used = set()

    def replace(m: re.Match) -> str:
        key = m.group("lines") or m.group("pylines") or m.group("value") or m.group("text")
        if key not in values:
            raise KeyError(f"template slot {key!r} has no value")
        used.add(key)
        value = values[key]
        if m.group("value"):
            return f"{key} = {value}"
        if (m.group("lines") or m.group("pylines")) and value and not value.endswith("\n"):
            raise ValueError(f"template slot {key!r} takes whole lines")
        return value

    out = _SLOT.sub(replace, text)
    if set(values) - used:
        raise ValueError(f"no template slot for {sorted(set(values) - used)}")
    return out
