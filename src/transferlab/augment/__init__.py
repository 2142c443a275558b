"""Training-image transforms (torchvision v2 on uint8 tensors).

Each config choice is a factory called by the datamodule as ``factory(image_size, channels)``; it
returns a per-sample transform, or ``None`` for no augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.transforms import v2

from transferlab.errors import ConfigError


def none(image_size: int, channels: int):
    """No augmentation: training images pass through as loaded."""
    return None


def basic(
    image_size: int,
    channels: int,
    scale: Sequence[float] = (0.6, 1.0),
    hflip: float = 0.5,
):
    """Random resized crop back to ``image_size`` and a horizontal flip.

    Args:
        image_size: output side (the loaded image size).
        channels: image channels (unused; every op here works on any channel count).
        scale: area range of the random crop.
        hflip: flip probability; set 0 for data where mirroring changes the label (digits).
    """
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(
            f"augmentation.scale must satisfy 0 < min <= max <= 1, got {list(scale)}."
        )
    ops = [v2.RandomResizedCrop(image_size, scale=(lo, hi), antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip(hflip))
    return v2.Compose(ops)
