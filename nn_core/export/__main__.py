"""``python -m nn_core.export``: see ``nn_core/export/cli.py``."""

import sys

from .cli import main

sys.exit(main())
