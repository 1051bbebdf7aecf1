"""Which rule sets the numba tests compile: each rule once, not the full product.

The numba backend compiles one training kernel per rule set (activation, optimizer,
dropout on or off) and dtype, and one prediction kernel per activation and dtype
(``nn_core/kernels.py: entry``), each several seconds from an empty cache (as CI
starts). A test suite that swept every activation x optimizer x dropout x dtype would
compile them all. So the backend and gradient tests take each activation in one dtype
(``ACTIVATION_DTYPES``: both dtypes appear, each activation once), each optimizer and
dropout once, and the output functions, which are not compiled into separate kernels,
with every activation. ``random_rule_set`` adds one sample of the full product, drawn
per run (its seed is in the test id, and ``NN_CORE_RULE_SEED`` repeats a draw).
"""

from __future__ import annotations

import os
import random

from nn_core.activations import ACTIVATIONS
from nn_core.losses import OUTPUTS
from nn_core.optim import OPTIMIZERS

DTYPES = ("float64", "float32")
#: Each activation with one dtype, alternating, so that both dtypes are covered.
ACTIVATION_DTYPES = [(act, DTYPES[i % 2]) for i, act in enumerate(ACTIVATIONS)]
DTYPE_OF = dict(ACTIVATION_DTYPES)


def random_rule_set() -> tuple[int, str, str, str, str, float]:
    """``(seed, activation, output, dtype, optimizer, dropout)``, one draw from the full product.

    The seed comes from ``NN_CORE_RULE_SEED`` when set, else fresh per run.
    """
    seed = int(os.environ.get("NN_CORE_RULE_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    return (seed, rng.choice(list(ACTIVATIONS)), rng.choice(list(OUTPUTS)), rng.choice(DTYPES),
            rng.choice(list(OPTIMIZERS)), rng.choice([0.0, 0.3]))
