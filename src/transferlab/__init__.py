"""transferlab: config-driven transfer-learning experiments."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

# the Hydra config tree (the repository's conf/, beside src/ in the editable install)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

# ${unless:FLAG,VALUE}: VALUE, or null when FLAG is true. train.yaml uses it so that
# backbone.pretrained=true replaces the default stage-1 weights file instead of clashing with it.
OmegaConf.register_new_resolver("unless", lambda flag, value: None if flag else value, replace=True)
