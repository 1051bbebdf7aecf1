"""Where the bundled UCI table is, in a checkout and after ``pip install .``.

A checkout has it in ``data/``; an installed package has it where ``setup.cfg``'s
``data_files`` put it, ``<prefix>/share/purchase-propensity/data/`` (the environment's
prefix, or the user base for ``pip install --user``), with its licence note
(``README.md``, CC BY 4.0) beside it.
"""

from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

#: The bundled table's file name (data/README.md describes it).
TABLE = "online_shoppers_intention.csv"
#: Its folder under an installation prefix (setup.cfg, [options.data_files]).
SHARE = Path("share", "purchase-propensity", "data")


def bundled_table() -> Path:
    """The path of the bundled UCI table.

    The first that exists of: the checkout's ``data/``, the environment's
    ``share/purchase-propensity/data/``, the user base's. When none does (an installation
    without its data files), the environment's path, which the caller's "file not found"
    then names.
    """
    candidates = [
        Path(__file__).resolve().parents[1] / "data" / TABLE,
        Path(sysconfig.get_path("data")) / SHARE / TABLE,
        Path(sys.prefix) / SHARE / TABLE,
        Path(site.getuserbase()) / SHARE / TABLE,
    ]
    return next((p for p in candidates if p.is_file()), candidates[1])
