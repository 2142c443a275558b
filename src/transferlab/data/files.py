"""Image sources on disk: an ImageFolder tree, or a torchvision dataset (downloaded when online)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms.v2 import functional as F

from transferlab.data.base import ImageDataModule, Splits, stratified_indices
from transferlab.errors import ConfigError

log = logging.getLogger("transferlab")

MODES = {1: "L", 3: "RGB"}
# digits, letters and house numbers: mirroring changes what they show, so no flip by default
MIRROR_SENSITIVE = {"MNIST", "EMNIST", "QMNIST", "KMNIST", "SVHN", "USPS", "Omniglot"}


def load_image(path: str, channels: int, size: int) -> torch.Tensor:
    """Decode any PIL-readable image (RGB, L, RGBA, palette, ...) to uint8 [C, size, size].

    The shorter side is resized to ``size`` and the centre cropped, so mixed sizes line up.
    """
    with Image.open(path) as img:
        x = F.pil_to_tensor(img.convert(MODES[channels]))
    x = F.resize(x, size, antialias=True)
    return F.center_crop(x, [size, size])


def _stack(images: list[torch.Tensor], labels, channels: int, size: int):
    x = torch.stack(images) if images else torch.zeros(0, channels, size, size, dtype=torch.uint8)
    return x, torch.as_tensor(np.asarray(labels), dtype=torch.long)


def decode_all(paths, labels, channels: int, size: int):
    """(images, labels, skipped): every readable file decoded; ``skipped`` lists (path, reason)
    for files that are empty, truncated or not images, each logged as one warning line."""
    images, kept, skipped = [], [], []
    for path, label in zip(paths, labels, strict=True):
        try:
            images.append(load_image(path, channels, size))
            kept.append(label)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError... for bad files
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            log.warning("skipped unreadable image %s (%s)", path, reason)
            skipped.append((str(path), reason))
    return images, np.asarray(kept, dtype=np.int64), skipped


class ImageFolderData(ImageDataModule):
    """Class sub-folders of images: ``root/train`` + ``root/val`` [+ ``root/test``], or one
    ``root/<class>/*`` tree split by fractions. Images are decoded once and kept in memory.

    Args:
        root: the data folder.
        channels: 3 (convert to RGB) or 1 (convert to greyscale).
        val_fraction, test_fraction: held-out shares when ``root`` has no split folders
            (also used to carve a test split out of val when there is no ``root/test``).
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(
        self,
        root: str,
        channels: int = 3,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channels not in MODES:
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}.")
        if not self.image_size:
            raise ConfigError(
                "data.image_size must be set for image folders (images differ in size)."
            )
        self.root = Path(root)
        self.mode_channels = channels  # `channels` (base class) reports the loaded images
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def _scan(self, folder: Path, classes: list[str] | None = None):
        if not folder.is_dir():
            raise ConfigError(
                f"Data folder '{folder}' does not exist; set data.root to a folder with one "
                "sub-folder of images per class (or train/ and val/ folders of those)."
            )
        try:
            found, mapping = datasets.folder.find_classes(str(folder))
            samples = datasets.folder.make_dataset(
                str(folder), mapping, extensions=datasets.folder.IMG_EXTENSIONS
            )
        except (FileNotFoundError, RuntimeError) as e:
            raise ConfigError(
                f"Data folder '{folder}' holds no images in class sub-folders; put images under "
                f"'{folder}/<class name>/' (supported: {', '.join(datasets.folder.IMG_EXTENSIONS)})."
            ) from e
        if classes is not None and found != classes:
            raise ConfigError(
                f"The classes in '{folder}' ({found}) differ from those in the train folder "
                f"({classes}); give every split the same class sub-folders."
            )
        paths, labels = zip(*samples, strict=True)
        images, labels, skipped = decode_all(paths, labels, self.mode_channels, self.image_size)
        self.skipped += skipped
        emptied = [found[c] for c in sorted(set(mapping.values()) - set(labels.tolist()))]
        if emptied:
            raise ConfigError(
                f"Every image of class '{emptied[0]}' in '{folder}' is unreadable (see the "
                "warnings above); replace those files or remove the class folder."
            )
        return images, labels, found

    def load(self) -> Splits:
        c, s = self.mode_channels, self.image_size

        def part(images, labels, picks=None):
            picks = range(len(labels)) if picks is None else picks
            return _stack([images[i] for i in picks], labels[list(picks)], c, s)

        if (self.root / "train").is_dir():
            images, labels, classes = self._scan(self.root / "train")
            train = part(images, labels)
            v_images, v_labels, _ = self._scan(self.root / "val", classes)
            if (self.root / "test").is_dir():
                t_images, t_labels, _ = self._scan(self.root / "test", classes)
                return Splits(train, part(v_images, v_labels), part(t_images, t_labels), classes)
            val_i, test_i = stratified_indices(v_labels, [0.5], self.seed)
            return Splits(
                train, part(v_images, v_labels, val_i), part(v_images, v_labels, test_i), classes
            )
        images, labels, classes = self._scan(self.root)
        parts = stratified_indices(labels, [self.val_fraction, self.test_fraction], self.seed)
        train, val, test = (part(images, labels, i) for i in parts)
        return Splits(train, val, test, classes)


class TorchvisionData(ImageDataModule):
    """A torchvision dataset by class name (CIFAR10, CIFAR100, MNIST, FashionMNIST, SVHN, ...).

    Args:
        name: the class in ``torchvision.datasets``.
        root: where the files live (or are downloaded to).
        download: fetch the files when missing (needs network access).
        val_fraction: share of the training split held out for validation.
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(
        self, name: str, root: str, download: bool = False, val_fraction: float = 0.1, **kwargs
    ):
        super().__init__(**kwargs)
        known = {
            n.lower(): n
            for n, cls in vars(datasets).items()
            if isinstance(cls, type) and issubclass(cls, datasets.VisionDataset)
        }
        if name.lower() not in known:
            raise ConfigError(
                f"torchvision has no dataset '{name}'; check data.name (e.g. cifar10, svhn)."
            )
        name = known[name.lower()]  # cifar10 -> CIFAR10: any capitalisation
        self.name, self.root, self.download, self.val_fraction = name, root, download, val_fraction
        self.flip_safe = name not in MIRROR_SENSITIVE

    def _split(self, train: bool):
        cls = getattr(datasets, self.name)
        params = inspect.signature(cls).parameters
        kw = {"train": train} if "train" in params else {"split": "train" if train else "test"}
        try:
            return cls(self.root, download=self.download, **kw)
        except RuntimeError as e:
            raise ConfigError(
                f"torchvision dataset {self.name} is not under '{self.root}'; set "
                "data.download=true (needs network access) or data.root to a folder that has it."
            ) from e

    @staticmethod
    def _to_tensors(ds) -> tuple[torch.Tensor, np.ndarray]:
        pairs = [
            (F.pil_to_tensor(img) if isinstance(img, Image.Image) else torch.as_tensor(img), label)
            for img, label in ds
        ]
        x = torch.stack([p[0] if p[0].ndim == 3 else p[0][None] for p in pairs])
        return x.to(torch.uint8), np.asarray([p[1] for p in pairs])

    def load(self) -> Splits:
        train_ds, test_ds = self._split(True), self._split(False)
        x, y = self._to_tensors(train_ds)
        tx, ty = self._to_tensors(test_ds)
        tr, va = stratified_indices(y, [self.val_fraction], self.seed)
        yt = torch.as_tensor(y, dtype=torch.long)
        classes = list(getattr(train_ds, "classes", [str(i) for i in range(int(y.max()) + 1)]))
        return Splits((x[tr], yt[tr]), (x[va], yt[va]), (tx, torch.as_tensor(ty)), classes)
