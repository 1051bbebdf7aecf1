"""Run ``propensity.predict``'s command line from a checkout: ``python predict.py --help``."""

import sys

from propensity.predict import main

if __name__ == "__main__":
    sys.exit(main())
