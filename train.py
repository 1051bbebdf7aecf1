"""Run ``propensity.train``'s command line from a checkout: ``python train.py --help``."""

import sys

from propensity.train import main

if __name__ == "__main__":
    sys.exit(main())
