"""Fine-tuning strategies as plain data plus pure functions over layer groups."""

from transferlab.strategies.core import (
    Strategy,
    backbone_multipliers,
    layer_decay_multipliers,
    trainable_mask,
)
from transferlab.strategies.regularization import EWC, L2SP, diagonal_fisher
from transferlab.strategies.schedule import UnfreezeSchedule
from transferlab.strategies.unfreeze import Unfreezer

__all__ = [
    "EWC",
    "L2SP",
    "Strategy",
    "UnfreezeSchedule",
    "Unfreezer",
    "backbone_multipliers",
    "diagonal_fisher",
    "layer_decay_multipliers",
    "trainable_mask",
]
