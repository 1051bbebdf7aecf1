"""The command-line programs: ``propensity.train``, ``propensity.predict``.

The top layer: they parse arguments and call ``features`` and ``nn_core``, which import nothing
from here. Installed as ``propensity-train`` and ``propensity-predict``; from a checkout,
``python train.py`` and ``python predict.py`` run the same ``main``.
"""

import sys
from pathlib import Path


def program_name(script: str) -> str:
    """The name a command's messages start with: ``propensity-train`` when started as the
    installed command, else ``train.py`` (``python train.py``, ``python -m propensity.train``,
    or ``main`` called from Python)."""
    started_as = Path(sys.argv[0]).name if sys.argv else ""
    return started_as if started_as == f"propensity-{script}" else f"{script}.py"


def print_error(script: str, message, status: int) -> int:
    """Print ``PROG: error: MESSAGE`` on stderr, one line (``PROG`` as ``program_name``);
    return ``status``, the exit status."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{program_name(script)}: error: {text}", file=sys.stderr)
    return status
