"""The command-line programs: ``propensity.train``, ``propensity.predict``.

The top layer: they parse arguments and call ``features`` and ``nn_core``, which import nothing
from here. Installed as ``propensity-train`` and ``propensity-predict``; from a checkout,
``python train.py`` and ``python predict.py`` run the same ``main``.
"""
