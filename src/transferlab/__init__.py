"""transferlab: config-driven transfer-learning experiments."""

from pathlib import Path

__version__ = "0.1.0"

# the Hydra config tree (the repository's conf/, beside src/ in the editable install)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
