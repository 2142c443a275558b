"""Fine-tuning strategies as plain data plus pure functions over layer groups."""

from transferlab.strategies.core import (
    Strategy,
    backbone_multipliers,
    layer_decay_multipliers,
    trainable_mask,
)

__all__ = ["Strategy", "backbone_multipliers", "layer_decay_multipliers", "trainable_mask"]
