"""Run ``propensity.serve``'s command line from a checkout: ``python serve.py --help``."""

import sys

from propensity.serve import main

if __name__ == "__main__":
    sys.exit(main())
