"""One image file through exactly what a datamodule's evaluation loader does to its images.

Two resize modes, because the sources load differently:

- ``shorter_side``: image folders decode each file with :func:`~transferlab.data.files.load_image`
  (converted to the folder's channels, shorter side resized on uint8, centre-cropped square).
- ``stretch``: sets built from arrays (MNIST, digits, MNIST-M, synthetic, torchvision sets and
  pairs of them) keep images at their native size and resize the whole tensor once with
  :func:`~transferlab.data.base.resize_images` (float, antialiased, stretched to a square,
  rounded); a pair converts channels first with
  :func:`~transferlab.data.domains.convert_channels`.

Both then take the evaluation centre crop the loader takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from transferlab.augment import center_crop
from transferlab.data.base import resize_images
from transferlab.data.domains import convert_channels
from transferlab.data.files import load_image

RESIZE_MODES = ("shorter_side", "stretch")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def decode_native(path: str | Path) -> torch.Tensor:
    """uint8 ``[1, H, W]`` of a greyscale file or ``[3, H, W]`` of any other, at its own size."""
    with Image.open(path) as img:
        return F.pil_to_tensor(img.convert("L" if img.mode in GREY_MODES else "RGB"))


def evaluation_image(
    path: str | Path, channels: int, size: int, crop: int, resize_mode: str
) -> torch.Tensor:
    """uint8 ``[channels, crop, crop]`` of one file, as the evaluation loader sees its images.

    Args:
        path: an image file PIL can read.
        channels: the model's channels (1 or 3).
        size: the loaded square side (``data.image_size``).
        crop: the evaluation centre crop (``data.crop_size``, or ``size``).
        resize_mode: ``shorter_side`` (image folders) or ``stretch`` (array data).
    """
    if resize_mode == "shorter_side":
        x = load_image(str(path), channels, size)
    elif resize_mode == "stretch":
        x = resize_images(convert_channels(decode_native(path)[None], channels), size)[0]
    else:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    return x if crop == size else center_crop(crop)(x)
