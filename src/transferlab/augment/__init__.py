"""Augmentation: per-image pipelines in DataLoader workers, batch mixing on the training device.

An :class:`Augmentation` (the ``augmentation=`` config group) pairs an optional per-image
pipeline (``augmentation/image``: none, basic, strong, randaugment) with optional batch mixing
(``augmentation/batch``: none, mixup, cutmix, mixup_cutmix).
"""

from __future__ import annotations

from collections.abc import Callable

from transferlab.augment.mixing import (
    BatchMix,
    cutmix,
    mix_batch,
    mixup,
    mixup_cutmix,
    no_mixing,
)
from transferlab.augment.pipelines import (
    basic,
    center_crop,
    crop_size_for,
    none,
    pretrained_normalization,
    randaugment,
    strong,
)


class Augmentation:
    """A per-image pipeline factory and a batch mixing spec, either of them optional.

    Called as ``augmentation(size, channels, flip_safe=...)`` it returns the per-image training
    transform (or None); :meth:`batch_transform` gives the module's on-device batch hook.

    Args:
        image: pipeline factory ``(size, channels, flip_safe) -> transform | None``.
        batch: a :class:`BatchMix`, or None for no mixing.
    """

    def __init__(self, image: Callable | None = None, batch: BatchMix | None = None):
        self.image, self.batch = image, batch

    def __call__(self, size: int, channels: int, flip_safe: bool = True):
        if self.image is None:
            return None
        return self.image(size, channels, flip_safe=flip_safe)

    def batch_transform(self, num_classes: int, batch_size: int):
        """``(x, y) -> (x, soft targets)`` for training batches, or None without mixing."""
        return None if self.batch is None else self.batch.bind(num_classes, batch_size)


__all__ = [
    "Augmentation",
    "BatchMix",
    "basic",
    "center_crop",
    "crop_size_for",
    "cutmix",
    "mix_batch",
    "mixup",
    "mixup_cutmix",
    "no_mixing",
    "none",
    "pretrained_normalization",
    "randaugment",
    "strong",
]
