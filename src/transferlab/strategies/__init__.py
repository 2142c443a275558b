"""Fine-tuning strategies as plain data plus pure functions over layer groups."""

from transferlab.strategies.core import (
    Strategy,
    backbone_multipliers,
    layer_decay_multipliers,
    trainable_mask,
    with_backbone_default,
)
from transferlab.strategies.peft import Adapters, BitFit, LoRA, apply_peft
from transferlab.strategies.prompt import PromptTuning
from transferlab.strategies.regularization import EWC, L2SP, diagonal_fisher
from transferlab.strategies.schedule import UnfreezeSchedule
from transferlab.strategies.unfreeze import Unfreezer

__all__ = [
    "EWC",
    "Adapters",
    "BitFit",
    "LoRA",
    "L2SP",
    "PromptTuning",
    "Strategy",
    "UnfreezeSchedule",
    "Unfreezer",
    "apply_peft",
    "backbone_multipliers",
    "diagonal_fisher",
    "layer_decay_multipliers",
    "trainable_mask",
    "with_backbone_default",
]
