"""transferlab: config-driven transfer-learning experiments.

From code: ``cfg = transferlab.compose([...overrides])`` gives the config a command would see;
``transferlab.build.build_experiment(cfg)`` turns it into parts; ``transferlab.train.train(cfg)``
runs it end to end.
"""

from transferlab.config import CONF_DIR, TINY_CPU, compose

__version__ = "0.1.0"

__all__ = ["CONF_DIR", "TINY_CPU", "compose", "__version__"]
