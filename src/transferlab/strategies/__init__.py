"""Fine-tuning strategies as plain data plus pure functions over layer groups."""

from transferlab.strategies.core import (
    Strategy,
    backbone_multipliers,
    layer_decay_multipliers,
    trainable_mask,
)
from transferlab.strategies.unfreeze import Unfreezer, UnfreezeSchedule

__all__ = [
    "Strategy",
    "UnfreezeSchedule",
    "Unfreezer",
    "backbone_multipliers",
    "layer_decay_multipliers",
    "trainable_mask",
]
