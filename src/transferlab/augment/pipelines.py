"""Per-image pipelines (torchvision v2 on uint8 ``[C, H, W]`` tensors) and the evaluation crop.

Every pipeline factory has the signature ``factory(size, channels, flip_safe=True, **options)``
and returns a transform whose output is ``size`` x ``size`` uint8, or ``None`` for no change.

- ``size`` is the side the model sees (``data.crop_size``, else the loaded ``data.image_size``).
- ``channels`` is 1 or 3. Colour operations that mean nothing on one channel (saturation, hue,
  random grayscale) are left out for greyscale images rather than run as silent no-ops.
- ``flip_safe`` says whether mirroring keeps an image's label. Digit data say no, so
  ``hflip=None`` (the default) flips with p=0.5 only where it is safe; give a number to force it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from transferlab.errors import ConfigError


def _check_scale(scale: Sequence[float]) -> tuple[float, float]:
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(
            f"augmentation.image.scale must satisfy 0 < min <= max <= 1, got {list(scale)}."
        )
    return float(lo), float(hi)


def flip_probability(hflip: float | None, flip_safe: bool) -> float:
    """The horizontal-flip probability: ``hflip`` when given, else 0.5 where mirroring is safe."""
    if hflip is None:
        return 0.5 if flip_safe else 0.0
    if not 0 <= hflip <= 1:
        raise ConfigError(f"augmentation.image.hflip must be in [0, 1] or null, got {hflip}.")
    return float(hflip)


def crop_and_flip(
    size: int, scale: Sequence[float], hflip: float | None, flip_safe: bool
) -> list[v2.Transform]:
    """RandomResizedCrop to ``size`` and, where it applies, a horizontal flip."""
    ops: list[v2.Transform] = [
        v2.RandomResizedCrop(size, scale=_check_scale(scale), antialias=True)
    ]
    p = flip_probability(hflip, flip_safe)
    if p > 0:
        ops.append(v2.RandomHorizontalFlip(p))
    return ops


def none(size: int, channels: int, flip_safe: bool = True):
    """No augmentation: training images go through the evaluation transform only."""
    return None


def basic(
    size: int,
    channels: int,
    flip_safe: bool = True,
    scale: Sequence[float] = (0.6, 1.0),
    hflip: float | None = None,
):
    """Random resized crop back to ``size`` and a horizontal flip.

    Args:
        size: output side.
        channels: image channels (every op here works on any count).
        flip_safe: whether the data may be mirrored (see the module docstring).
        scale: area range of the random crop.
        hflip: flip probability; null = 0.5 where mirroring is safe, else 0.
    """
    return v2.Compose(crop_and_flip(size, scale, hflip, flip_safe))


def strong(
    size: int,
    channels: int,
    flip_safe: bool = True,
    scale: Sequence[float] = (0.8, 1.0),
    hflip: float | None = None,
    degrees: float = 15.0,
    jitter: Sequence[float] = (0.2, 0.2, 0.2, 0.1),
    grayscale: float = 0.1,
    blur_kernel: int = 3,
    blur_sigma: Sequence[float] = (0.1, 2.0),
    erase: float = 0.2,
    erase_scale: Sequence[float] = (0.02, 0.15),
):
    """Crop, flip, rotation, colour jitter, random grayscale, Gaussian blur, random erasing.

    Args:
        size, channels, flip_safe, scale, hflip: as in :func:`basic`.
        degrees: rotation range, +/- degrees.
        jitter: brightness, contrast, saturation, hue; saturation and hue are dropped for
            greyscale images, where they do nothing.
        grayscale: probability of turning an RGB image grey (not applied to greyscale images).
        blur_kernel: Gaussian blur kernel side (odd); 0 turns the blur off.
        blur_sigma: blur sigma range.
        erase: probability of erasing a random rectangle (filled with 0).
        erase_scale: area range of the erased rectangle.
    """
    brightness, contrast, saturation, hue = jitter
    ops = crop_and_flip(size, scale, hflip, flip_safe)
    ops.append(v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR))
    if channels == 3:
        ops.append(v2.ColorJitter(brightness, contrast, saturation, hue))
        if grayscale > 0:
            ops.append(v2.RandomGrayscale(grayscale))
    else:
        ops.append(v2.ColorJitter(brightness, contrast))
    if blur_kernel:
        if blur_kernel % 2 == 0:
            raise ConfigError(
                f"augmentation.image.blur_kernel must be odd (or 0 for no blur), got {blur_kernel}."
            )
        ops.append(v2.GaussianBlur(blur_kernel, sigma=tuple(blur_sigma)))
    if erase > 0:
        ops.append(v2.RandomErasing(erase, scale=tuple(erase_scale), value=0))
    return v2.Compose(ops)


def randaugment(
    size: int,
    channels: int,
    flip_safe: bool = True,
    num_ops: int = 2,
    magnitude: int = 9,
    scale: Sequence[float] = (0.6, 1.0),
    hflip: float | None = None,
):
    """Crop and flip, then RandAugment: ``num_ops`` (N) random ops at ``magnitude`` (M, 0-30).

    On greyscale images RandAugment's colour op changes nothing, so it just costs a draw.
    """
    if num_ops < 0 or not 0 <= magnitude <= 30:
        raise ConfigError(
            "augmentation.image.num_ops must be >= 0 and magnitude in [0, 30], got "
            f"{num_ops} and {magnitude}."
        )
    ops = crop_and_flip(size, scale, hflip, flip_safe)
    ops.append(v2.RandAugment(num_ops=num_ops, magnitude=magnitude))
    return v2.Compose(ops)


def center_crop(size: int):
    """The deterministic evaluation transform on loaded (already resized) images."""
    return v2.CenterCrop(size)


def crop_size_for(loaded: int, crop_size: int | None) -> int:
    """The side the model sees; a crop larger than the loaded images is an error."""
    if crop_size is None:
        return loaded
    if not 0 < crop_size <= loaded:
        raise ConfigError(
            f"data.crop_size {crop_size} does not fit the {loaded}-px loaded images; set "
            f"data.image_size to at least {crop_size} (a resize) or choose a smaller crop."
        )
    return crop_size


def pretrained_normalization(
    pretrained_cfg: dict, channels: int
) -> tuple[list[float], list[float]] | None:
    """Mean and std from a timm ``pretrained_cfg``, averaged to one value for greyscale input.

    Greyscale images on an RGB model see the summed first-conv filters, so the channel mean of
    the RGB statistics is the matching grey statistic.
    """
    mean, std = pretrained_cfg.get("mean"), pretrained_cfg.get("std")
    if mean is None or std is None:
        return None
    mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    if channels != len(mean):
        mean_t, std_t = mean_t.mean().expand(channels), std_t.mean().expand(channels)
    return mean_t.tolist(), std_t.tolist()
