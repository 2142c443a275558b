"""Domain-shift data: MNIST-M synthesised offline, and source/target pairs for adaptation.

MNIST-M follows Ganin & Lempitsky (2015): each MNIST digit is blended over a random patch of a
colour photograph by the per-channel absolute difference ``|digit - patch|``. Their photos came
from BSDS500; offline we crop scikit-learn's two sample photos at three scales.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_lightning.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader

from transferlab.data.base import ImageDataModule, Splits, resize_images
from transferlab.data.builtin import ArraySplitDataModule, mnist5k_arrays
from transferlab.data.files import ImageFolderData
from transferlab.errors import ConfigError

PHOTO_SCALES = (1.0, 0.5, 0.25)
STATISTICS = ("source", "per_domain")


def photo_pyramid() -> list[np.ndarray]:
    """scikit-learn's sample photos (china, flower), each at every scale in PHOTO_SCALES."""
    from sklearn.datasets import load_sample_images

    pyramid = []
    for photo in load_sample_images().images:
        img = Image.fromarray(photo)
        for s in PHOTO_SCALES:
            size = (round(img.width * s), round(img.height * s))
            pyramid.append(np.asarray(img.resize(size, Image.Resampling.BILINEAR)))
    return pyramid


def blend_over_photos(digits: np.ndarray, photos: list[np.ndarray], seed: int) -> np.ndarray:
    """``|digit - patch|`` per channel, one random photo patch per digit.

    Args:
        digits: uint8 ``[N, H, W]`` greyscale digits.
        photos: uint8 ``[h, w, 3]`` colour photos, each at least ``H x W``.
        seed: seed of the patch choice; the same seed gives the same images.

    Returns:
        uint8 ``[N, 3, H, W]``.
    """
    rng = np.random.default_rng(seed)
    n, h, w = digits.shape
    out = np.empty((n, 3, h, w), dtype=np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        y = rng.integers(photo.shape[0] - h + 1)
        x = rng.integers(photo.shape[1] - w + 1)
        patch = photo[y : y + h, x : x + w].astype(np.int16).transpose(2, 0, 1)
        out[i] = np.abs(digits[i].astype(np.int16)[None] - patch).astype(np.uint8)
    return out


@lru_cache(maxsize=2)
def _synthesise_mnist_m(seed: int) -> np.ndarray:
    digits, _ = mnist5k_arrays()
    return blend_over_photos(digits[:, 0].numpy(), photo_pyramid(), seed)


def mnist_m_arrays(cache_dir: str | None = None, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """MNIST-M from the MNIST 5k subset: uint8 ``[5000, 3, 28, 28]`` and the digit labels.

    Built once per ``seed`` and cached as ``cache_dir/mnist_m_5k_seed{seed}.npz``.
    """
    labels = mnist5k_arrays()[1]
    path = Path(cache_dir, f"mnist_m_5k_seed{seed}.npz") if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            return torch.from_numpy(f["images"]), labels
    images = _synthesise_mnist_m(seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a sweep's jobs may build it at once: each writes its own file, then renames it
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, images=images)
        tmp.replace(path)
    return torch.from_numpy(images.copy()), labels


class MNISTM(ArraySplitDataModule):
    """MNIST-M (colour digits over photo patches) built from the MNIST 5k subset; offline.

    The split uses the same stratified logic as ``MNIST5k``: with the same seed both sets put the
    same digits in train, val and test, so no test digit is ever seen in training in either domain.

    Args:
        cache_dir: where the synthesised images are cached (null: rebuild each time).
        build_seed: seed of the patch choice (fixed by default, so every run sees one data set).
        **kwargs: see :class:`ArraySplitDataModule`.
    """

    def __init__(self, cache_dir: str | None = None, build_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.cache_dir, self.build_seed = cache_dir, build_seed

    def arrays(self):
        images, labels = mnist_m_arrays(self.cache_dir, self.build_seed)
        return images, labels, [str(d) for d in range(10)]


def folder_domain(root: str | None, role: str, **kwargs) -> ImageFolderData:
    """An image folder as one side of a pair; ``role`` (source/target) names it in errors."""
    if not root:
        raise ConfigError(
            f"Set data.{role}.root to a folder with one sub-folder of images per class."
        )
    return ImageFolderData(root=root, **kwargs)


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` to ``channels`` (grey to RGB by copying, RGB to grey by luma)."""
    c = images.shape[1]
    if channels is None or c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).byte()
    raise ConfigError(
        f"Cannot convert {c}-channel images to {channels}; set data.channels to 1 or 3."
    )


class DomainPair(ImageDataModule):
    """A labelled source domain and an unlabelled target domain, for domain adaptation.

    Training batches are ``{"source": (images, labels), "target": (images, -1)}``: the target's
    labels never reach the training loop. An epoch runs over the larger training set while the smaller
    one cycles. Validation loaders are [source val, target val] and test loaders [target test,
    source test]; the target ones are left out when ``target_labels`` is false. The model's
    normalisation statistics come from the source training images.

    Args:
        source: datamodule of the labelled source domain.
        target: datamodule of the target domain (same classes).
        channels: convert both domains to 1 or 3 channels (null: they must already match).
        target_labels: whether the target's val/test labels exist for evaluation.
        statistics: ``source`` normalises both domains with the source training statistics;
            ``per_domain`` gives the target its own (from its unlabelled training images), the
            DANN paper's per-domain mean subtraction. A given ``std`` holds for both.
        **kwargs: see :class:`ImageDataModule`; ``image_size`` resizes both domains (null: the
            domains must already have one size).
    """

    def __init__(
        self,
        source: ImageDataModule,
        target: ImageDataModule,
        channels: int | None = None,
        target_labels: bool = True,
        statistics: str = "source",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channels not in (None, 1, 3):
            raise ConfigError(f"data.channels must be 1, 3 or null, got {channels}.")
        if statistics not in STATISTICS:
            raise ConfigError(
                f"data.statistics must be one of {', '.join(STATISTICS)}, got '{statistics}'."
            )
        self.statistics = statistics
        self.source, self.target = source, target
        # mirroring must keep labels in both domains for a pipeline to flip
        self.flip_safe = getattr(source, "flip_safe", True) and getattr(target, "flip_safe", True)
        self.pair_channels, self.target_labels = channels, target_labels
        self.target_splits: Splits | None = None

    def load(self) -> Splits:
        self.source.setup()
        self.target.setup()
        src, tgt = self.source.splits, self.target.splits
        if self.target_labels and src.class_names != tgt.class_names:
            raise ConfigError(
                f"The source classes {src.class_names} differ from the target classes "
                f"{tgt.class_names}; pair domains that share one label set."
            )
        src, tgt = (self._reconciled(s) for s in (src, tgt))
        (cs, *size_s), (ct, *size_t) = src.train[0].shape[1:], tgt.train[0].shape[1:]
        if cs != ct:
            raise ConfigError(
                f"The source images have {cs} channel(s) and the target images {ct}; set "
                f"data.channels={max(cs, ct)} to convert both domains to one channel count."
            )
        if size_s != size_t:
            raise ConfigError(
                f"The source images are {size_s[0]}x{size_s[1]} and the target images "
                f"{size_t[0]}x{size_t[1]}; set data.image_size to resize both domains to one size."
            )
        self.target_splits = tgt
        self.skipped = self.source.skipped + self.target.skipped
        return src

    @property
    def target_normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel (mean, std) the target's images are normalised with: the source's, or
        under ``statistics=per_domain`` those of the target training images (no labels used)."""
        mean, std = self.normalization  # loads the splits
        if self.statistics == "source":
            return mean, std
        images = self.target_splits.train[0].float() / 255
        own_mean = images.mean((0, 2, 3)).tolist()
        own_std = images.std((0, 2, 3)).clamp_min(1e-3).tolist() if self.std is None else std
        return own_mean, own_std

    def target_train_loader(self) -> DataLoader:
        """The target's training images the evaluation way, labels all -1 (for AdaBN)."""
        self._loaded()
        images, labels = self.target_splits.train
        return self.loader_over(images, torch.full_like(labels, -1), train=False)

    def _reconciled(self, splits: Splits) -> Splits:
        """Both domains' images converted to the pair's channel count and image size."""

        def fix(part):
            return resize_images(
                convert_channels(part[0], self.pair_channels), self.image_size
            ), part[1]

        return Splits(fix(splits.train), fix(splits.val), fix(splits.test), splits.class_names)

    def _target_loader(self, split: str, train: bool) -> DataLoader:
        """A loader over the target split, built exactly as the source's (same transforms).

        Training sees the target images with every label replaced by -1 (unknown).
        """
        self._loaded()
        images, labels = getattr(self.target_splits, split)
        if train:
            labels = torch.full_like(labels, -1)
        return self.loader_over(images, labels, train)

    def eval_dataloader(self, split: str) -> DataLoader:
        """A split the evaluation way. ``test`` is the target's test set (what ``test/…``
        metrics score) when the target has labels; ``train`` and ``val`` stay the source's,
        so that nothing fitted on them (a temperature, a probe) sees target labels."""
        if split == "test" and self.target_labels:
            return self._target_loader("test", train=False)
        return super().eval_dataloader(split)

    def train_dataloader(self) -> CombinedLoader:
        loaders = {
            "source": self._loader("train", train=True),
            "target": self._target_loader("train", train=True),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> list[DataLoader]:
        loaders = [self._loader("val", train=False)]
        if self.target_labels:
            loaders.append(self._target_loader("val", train=False))
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        loaders = [self._loader("test", train=False)]
        if self.target_labels:
            loaders.insert(0, self._target_loader("test", train=False))
        return loaders
