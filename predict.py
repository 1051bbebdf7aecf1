"""Run ``propensity.predict``'s command line from a checkout: ``python predict.py --help``."""

import sys

from propensity import run_program

if __name__ == "__main__":
    sys.exit(run_program("propensity.predict"))
