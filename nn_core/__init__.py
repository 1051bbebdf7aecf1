"""nn_core: a multilayer perceptron written by hand, with its gradient check.

``H = f(X W + b)`` for each hidden layer, ``Y = sigmoid(H W_y + b_y)``,
binary cross-entropy, and backpropagation by hand. See ``docs/math.md``.

>>> from nn_core import MLP, gradcheck
>>> m = MLP(4, hidden=(3,), dtype="float64", backend="numpy")
"""

from .gradcheck import GradcheckReport, check_gradients, gradcheck, input_gradcheck
from .io import ModelFileError
from .modeldir import Predictor, load_model, save_model
from .network import MLP
from .training import History

__all__ = [
    "MLP", "GradcheckReport", "History", "ModelFileError", "Predictor", "check_gradients",
    "gradcheck", "input_gradcheck", "load_model", "save_model",
]
__version__ = "0.1.0"
