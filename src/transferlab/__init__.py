"""transferlab: config-driven transfer-learning experiments."""

__version__ = "0.1.0"
