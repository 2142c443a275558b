"""The datamodule every data source shares: splits, loaders, and normalisation on device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from transferlab.augment import center_crop, crop_size_for
from transferlab.data.sampling import SplitLoaders
from transferlab.errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]


class TensorImageDataset(Dataset):
    """uint8 images ``[N, C, H, W]`` held in memory, with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Transform | None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


@dataclass
class Splits:
    """uint8 image tensors and int64 labels for each split, plus the class names."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    class_names: list[str]


def stratified_indices(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into len(fractions)+1 stratified parts; the first takes the rest.

    Deterministic for a given seed: the same labels and seed always give the same indices, in
    the same order (the training part sorted, the held-out parts shuffled).
    """
    rest = np.arange(len(labels))
    parts = []
    for frac in fractions:
        size = int(round(frac * len(labels)))  # whole counts: float shares round unpredictably
        if size == 0:
            parts.append(np.array([], dtype=int))
            continue
        try:
            rest, part = train_test_split(
                rest, test_size=size, stratify=labels[rest], random_state=seed
            )
        except ValueError as e:
            raise ConfigError(
                f"Cannot hold out {frac:.0%} of {len(labels)} images with every class in each "
                f"split ({e}); use more data or a larger held-out fraction."
            ) from e
        # held-out parts stay in the splitter's seeded shuffled order: sorted, a class-ordered
        # set (MNIST 5k) gives one-class validation batches, and the sanity check's first two
        # batches would see a single class
        parts.append(part)
    return [np.sort(rest), *parts]


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 ``[N, C, H, W]`` images to ``size`` x ``size`` (antialiased bilinear)."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    x = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.round_().clamp_(0, 255).to(torch.uint8)


class ImageDataModule(SplitLoaders):
    """Base of every image source: subclasses implement :meth:`load` and return :class:`Splits`.

    Loaders yield uint8 images; the model converts and normalises them on its own device (with
    :attr:`normalization`), which keeps host work and transfer size small.

    Args:
        batch_size: images per batch.
        num_workers: DataLoader worker processes (persistent when > 0).
        image_size: square side the images are resized to once, when loaded.
        mean, std: per-channel statistics in [0, 1]; ``null`` computes them on the train split.
        augmentation: factory ``(size, channels, flip_safe=...) -> transform | None`` for
            training images (a :class:`transferlab.augment.Augmentation`).
        seed: seed of the deterministic splits.
        pin_memory: pin host memory when training on a GPU.
        drop_last: drop the last incomplete training batch.
        crop_size: side the model sees: training pipelines crop to it and evaluation takes the
            centre crop; null = the loaded ``image_size``.
    """

    # Whether mirroring keeps an image's label; digit data say no, and pipelines then skip
    # the horizontal flip unless it is asked for explicitly.
    flip_safe: bool = True
    # what the labels are (image sets always hold class indices); "task" is a source setting
    # of some sets (MnistSplit: source or target), so the attribute has its own name
    task_type = "classification"

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        image_size: int | None = 32,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augmentation: Callable[[int, int], Transform | None] | None = None,
        seed: int = 0,
        pin_memory: bool = True,
        drop_last: bool = False,
        crop_size: int | None = None,
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be a whole number >= 1, got {batch_size!r}.")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ConfigError(
                f"data.image_size must be a whole number of pixels >= 1 (or null to keep the "
                f"loaded size), got {image_size!r}."
            )
        self.batch_size, self.num_workers, self.image_size = batch_size, num_workers, image_size
        self.mean, self.std, self.augmentation, self.seed = mean, std, augmentation, seed
        self.pin_memory, self.drop_last, self.crop_size = pin_memory, drop_last, crop_size
        self.splits: Splits | None = None
        # (path, reason) of every file skipped as unreadable while loading
        self.skipped: list[tuple[str, str]] = []
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None

    def load(self) -> Splits:
        raise NotImplementedError

    # -- facts the model builder reads after setup() ------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self._loaded().class_names)

    @property
    def channels(self) -> int:
        return self._loaded().train[0].shape[1]

    @property
    def class_names(self) -> list[str]:
        return self._loaded().class_names

    def _loaded(self) -> Splits:
        if self.splits is None:
            self.setup()
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self.load()
        resized = {
            name: (
                resize_images(getattr(splits, name)[0], self.image_size),
                getattr(splits, name)[1],
            )
            for name in ("train", "val", "test")
        }
        self.splits = Splits(**resized, class_names=splits.class_names)
        if len(self.splits.train[1]) == 0:
            raise ConfigError("The training split is empty; check the data settings.")
        train_x = self.splits.train[0]
        crop_size_for(min(train_x.shape[-2:]), self.crop_size)  # fail before any training
        mean = self.mean if self.mean is not None else (train_x.float() / 255).mean((0, 2, 3))
        std = self.std if self.std is not None else (train_x.float() / 255).std((0, 2, 3))
        c = train_x.shape[1]
        mean, std = torch.as_tensor(mean).float(), torch.as_tensor(std).float().clamp_min(1e-3)
        if mean.numel() == 1:
            mean, std = mean.expand(c), std.expand(c)
        if mean.numel() != c:
            raise ConfigError(
                f"data.mean/std have {mean.numel()} values but the images have {c} channels; "
                f"give {c} values or null to compute them from the data."
            )
        self._norm = (mean, std)

    def _loader(self, split: str, train: bool) -> DataLoader:
        return self.loader_over(*getattr(self._loaded(), split), train=train)

    def training_transform(self, images: torch.Tensor) -> Transform | None:
        """The random per-image pipeline training batches of ``images`` get, or None."""
        if not self.augmentation:
            return None
        size = crop_size_for(min(images.shape[-2:]), self.crop_size)
        return self.augmentation(size, images.shape[1], flip_safe=self.flip_safe)

    def augments_training(self) -> bool:
        """Whether training images pass a random pipeline (so features change every epoch)."""
        return self.training_transform(self._loaded().train[0]) is not None

    def loader_over(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> DataLoader:
        """A loader over ``(x, y)`` built the way this datamodule builds its own: the training
        pipeline and shuffling when ``train``, else the deterministic centre crop."""
        loaded = min(x.shape[-2:])
        size = crop_size_for(loaded, self.crop_size)
        transform = self.training_transform(x) if train else None
        if transform is None and (size != loaded or x.shape[-2] != x.shape[-1]):
            transform = center_crop(size)  # deterministic: evaluation, or no training pipeline
        return self.loader(TensorImageDataset(x, y, transform), train=train)

    @property
    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel (mean, std) in [0, 1] units, for the model's input normalisation."""
        self._loaded()
        return self._norm[0].flatten().tolist(), self._norm[1].flatten().tolist()
