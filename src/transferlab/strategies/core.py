"""Which backbone layer groups train, and at what learning-rate multiplier.

Everything here is a pure function of the strategy and the number of layer groups, so it can be
tested without a model. The module turns the multipliers into optimizer param groups once; a
multiplier of 0 means frozen (``requires_grad=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from transferlab.errors import ConfigError
from transferlab.strategies.schedule import UnfreezeSchedule

if TYPE_CHECKING:
    from transferlab.strategies.peft import Adapters, BitFit, LoRA
    from transferlab.strategies.prompt import PromptTuning

BN_POLICIES = ("frozen", "train")


@dataclass(frozen=True)
class Strategy:
    """A fine-tuning recipe.

    Args:
        trainable_groups: how many backbone layer groups, counted from the top, train;
            0 trains the head only, ``all`` trains every group.
        backbone_lr_mult: LR of the trainable backbone groups relative to the head's; None: the
            backbone's default (:data:`DEFAULT_BACKBONE_LR_MULT`), filled in by
            :func:`with_backbone_default` when the run is built.
        layer_decay: gamma of layer-wise LR decay; group l of L (head on top) gets gamma^(L-l).
        reinit: start the backbone from random weights (ignores backbone weights).
        unfreeze: when to unfreeze more groups during training (gradual unfreezing, two-phase).
        bn: ``frozen`` keeps BatchNorm layers of frozen groups in eval mode (running statistics
            untouched); ``train`` lets them keep updating their statistics.
        precise_bn: before each validation, re-estimate the running statistics of the backbone's
            BatchNorm layers that training updates, on the training images with the current
            weights (:mod:`transferlab.batchnorm`); costs one forward pass over at most
            ``PRECISE_BN_BATCHES`` training batches an epoch.
        cache_features: ``auto`` computes a frozen backbone's features once and trains the head
            on them whenever that gives the same training (see :mod:`transferlab.cache`);
            ``true`` insists (an error says why it cannot), ``false`` never caches.
        peft: a parameter-efficient method (:mod:`transferlab.strategies.peft`): in a training
            group only its parameters (LoRA updates, adapters, biases) train, the base weights
            stay frozen; None trains whole groups.
        lr: the head's AdamW LR this recipe was chosen with; ``optimizer=adamw`` takes it as its
            ``lr`` (an ``optimizer.lr`` set by the user or an experiment wins); None: 1e-3. The
            strategy itself does not read it.
    """

    trainable_groups: int | str = "all"
    backbone_lr_mult: float | None = 1.0
    layer_decay: float = 1.0
    reinit: bool = False
    bn: str = "frozen"
    precise_bn: bool = False
    unfreeze: UnfreezeSchedule | None = None
    cache_features: bool | str = "auto"
    peft: LoRA | BitFit | Adapters | PromptTuning | None = None
    lr: float | None = None

    def __post_init__(self):
        if self.peft is not None and self.reinit:
            raise ConfigError(
                "A parameter-efficient strategy adapts pretrained weights, but strategy.reinit="
                "true starts from random ones; set strategy.reinit=false."
            )
        if self.backbone_lr_mult is not None and self.backbone_lr_mult < 0:
            raise ConfigError(
                f"strategy.backbone_lr_mult must be >= 0, got {self.backbone_lr_mult}; "
                "use 0 only through strategy=feature_extraction."
            )
        if not 0 < self.layer_decay <= 1:
            # gamma > 1 would train the stem faster than the head: the opposite of the method
            raise ConfigError(
                f"strategy.layer_decay (gamma) must be in (0, 1], got {self.layer_decay}; "
                "use 1.0 for no decay, or e.g. 0.7 to give each lower group 0.7x the LR above it."
            )
        if self.bn not in BN_POLICIES:
            raise ConfigError(f"strategy.bn must be one of {BN_POLICIES}, got '{self.bn}'.")
        k = self.trainable_groups
        if not (k == "all" or (isinstance(k, int) and not isinstance(k, bool) and k >= 0)):
            raise ConfigError(
                f"strategy.trainable_groups must be 'all' or an integer >= 0, got {k!r}."
            )


# strategy.backbone_lr_mult=null: image backbones train at the head's LR (chosen on validation,
# experiments/defaults/README.md), text encoders at a tenth of it (experiments/text_transfer)
DEFAULT_BACKBONE_LR_MULT = {"image": 1.0, "text": 0.1}


def with_backbone_default(strategy: Strategy, text: bool) -> Strategy:
    """``strategy`` with ``backbone_lr_mult=None`` replaced by the backbone kind's default."""
    if strategy.backbone_lr_mult is not None:
        return strategy
    return replace(strategy, backbone_lr_mult=DEFAULT_BACKBONE_LR_MULT["text" if text else "image"])


def layer_decay_multipliers(num_groups: int, gamma: float) -> list[float]:
    """gamma^(L-l) for l = 1..L, bottom to top: the top group gets 1, each lower one gamma less.

    With 4 groups and gamma = 0.1 a base LR of 1e-3 becomes 1e-6, 1e-5, 1e-4, 1e-3.
    """
    return [gamma ** (num_groups - 1 - i) for i in range(num_groups)]


def trainable_mask(strategy: Strategy, num_groups: int) -> list[bool]:
    """Which backbone groups (bottom to top) train under ``strategy``."""
    k = strategy.trainable_groups
    if k == "all":
        k = num_groups
    if k > num_groups:
        raise ConfigError(
            f"strategy.trainable_groups={k} but this backbone has only {num_groups} layer groups; "
            f"choose a value from 0 to {num_groups}."
        )
    return [i >= num_groups - k for i in range(num_groups)]


def backbone_multipliers(strategy: Strategy, num_groups: int) -> list[float]:
    """LR multiplier of each backbone group (bottom to top) relative to the head; 0 = frozen.

    Layer decay counts the head as the top layer, so the top backbone group gets
    ``backbone_lr_mult * gamma`` and the bottom one ``backbone_lr_mult * gamma^num_groups``.
    """
    decay = layer_decay_multipliers(num_groups + 1, strategy.layer_decay)[:-1]
    mask = trainable_mask(strategy, num_groups)
    return [strategy.backbone_lr_mult * d if m else 0.0 for d, m in zip(decay, mask, strict=True)]
