"""Mixup and CutMix on whole batches, on the training device, after collation.

The functional core is :func:`mix_batch`; :class:`BatchMix` is the config-facing spec that
checks its settings at config time and is bound to a class count to give the module's
``batch_augment`` hook, ``(x, y) -> (x, soft targets)``.

Pairs are made by rolling the batch by one (torchvision's ``MixUp``/``CutMix``), so any batch
size of 2 or more works, odd ones included. A last batch of a single image mixes with itself,
which leaves it unchanged with its hard label as the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torchvision.transforms import v2

from transferlab.errors import ConfigError

MODES = ("mixup", "cutmix", "mixup_cutmix")


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, transform: v2.Transform
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a torchvision mixing transform to a uint8 batch; returns (uint8 images, soft targets).

    Mixing runs in float; the result is rounded back to uint8 so the model's on-device
    normalisation still applies (CutMix is exact, Mixup moves pixels by at most half a level).
    """
    mixed, soft = transform(x.float(), y)
    return mixed.round_().clamp_(0, 255).to(torch.uint8), soft


def _check_alpha(name: str, alpha: float) -> float:
    if not alpha > 0:
        raise ConfigError(
            f"augmentation.batch.{name} must be > 0 (it is the Beta(α, α) parameter), got {alpha}; "
            "use augmentation=none (or another image-only choice) for no mixing."
        )
    return float(alpha)


@dataclass(frozen=True)
class BatchMix:
    """Which mixing to apply and with what strength.

    Args:
        mode: ``mixup``, ``cutmix`` or ``mixup_cutmix`` (one of the two per batch).
        alpha: Beta(α, α) parameter of Mixup's λ (``mixup`` and ``mixup_cutmix``).
        cutmix_alpha: Beta(α, α) parameter of CutMix's λ (``cutmix`` and ``mixup_cutmix``).
        switch_prob: in ``mixup_cutmix``, the probability that a batch gets CutMix.
    """

    mode: str = "mixup"
    alpha: float = 0.2
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(
                f"augmentation.batch.mode must be one of {', '.join(MODES)}, got '{self.mode}'."
            )
        if self.mode != "cutmix":
            _check_alpha("alpha", self.alpha)
        if self.mode != "mixup":
            _check_alpha("cutmix_alpha", self.cutmix_alpha)
        if not 0 <= self.switch_prob <= 1:
            raise ConfigError(
                f"augmentation.batch.switch_prob must be in [0, 1], got {self.switch_prob}."
            )

    def transform(self, num_classes: int) -> v2.Transform:
        """The torchvision transform for ``num_classes`` classes."""
        mixup = v2.MixUp(alpha=self.alpha, num_classes=num_classes)
        cutmix = v2.CutMix(alpha=self.cutmix_alpha, num_classes=num_classes)
        if self.mode == "mixup":
            return mixup
        if self.mode == "cutmix":
            return cutmix
        return v2.RandomChoice([mixup, cutmix], p=[1 - self.switch_prob, self.switch_prob])

    def bind(self, num_classes: int, batch_size: int):
        """The ``(x, y) -> (x, soft targets)`` hook; refuses batches too small to pair."""
        if batch_size < 2:
            raise ConfigError(
                f"augmentation={self.mode} mixes pairs of images, so data.batch_size must be at "
                f"least 2, got {batch_size}."
            )
        return partial(mix_batch, transform=self.transform(num_classes))


# The config factories check their own keys, so an error names the key the user typed
# (``augmentation.batch.alpha`` of cutmix is BatchMix's cutmix_alpha).


def mixup(alpha: float = 0.2) -> BatchMix:
    """Mixup: x = λ·x_i + (1-λ)·x_j, targets mixed the same way, λ ~ Beta(α, α)."""
    return BatchMix("mixup", alpha=_check_alpha("alpha", alpha))


def cutmix(alpha: float = 1.0) -> BatchMix:
    """CutMix: a box of x_j pasted into x_i; λ is the share of x_i left after the paste."""
    return BatchMix("cutmix", cutmix_alpha=_check_alpha("alpha", alpha))


def mixup_cutmix(
    mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0, switch_prob: float = 0.5
) -> BatchMix:
    """Mixup or CutMix per batch; CutMix with probability ``switch_prob``."""
    mixup_alpha = _check_alpha("mixup_alpha", mixup_alpha)
    return BatchMix(
        "mixup_cutmix", mixup_alpha, _check_alpha("cutmix_alpha", cutmix_alpha), switch_prob
    )


def no_mixing() -> None:
    """No batch mixing (``augmentation/batch=none``)."""
    return None
