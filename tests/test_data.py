"""Built-in data sources: batch shapes, splits (sizes, overlap, seeds), bad input, statistics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferlab.data import (
    Digits,
    ImageDataModule,
    ImageFolderData,
    MNIST5k,
    MnistSplit,
    Splits,
    Synthetic,
    TorchvisionData,
    stratified_indices,
)
from transferlab.data.builtin import mnist5k_arrays
from transferlab.errors import ConfigError

SPLITS = ("train", "val", "test")


def row_hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]


def counts(labels: torch.Tensor, n: int) -> list[int]:
    return np.bincount(labels.numpy(), minlength=n).tolist()


def assert_disjoint_splits(dm: ImageDataModule) -> None:
    """No image (by pixel content) appears in two splits."""
    per_split = {name: set(row_hashes(getattr(dm.splits, name)[0])) for name in SPLITS}
    for name in SPLITS:
        assert len(per_split[name]) == len(getattr(dm.splits, name)[0]), f"duplicates in {name}"
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]


def save_png(path: Path, value: int, size=(12, 10), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).convert(mode).save(path)


# -- every loader yields uint8 [B, C, S, S] batches with valid labels ----------------------------

DIGIT_NAMES = [str(d) for d in range(10)]
LOADERS = {
    "mnist5k": (lambda s: MNIST5k(image_size=s, batch_size=8), 1, DIGIT_NAMES),
    "digits": (lambda s: Digits(image_size=s, batch_size=8), 1, DIGIT_NAMES),
    "synthetic": (
        lambda s: Synthetic(num_classes=3, channels=3, image_size=s, batch_size=8),
        3,
        ["class0", "class1", "class2"],
    ),
    "synthetic_grey": (
        lambda s: Synthetic(num_classes=5, channels=1, image_size=s, batch_size=8),
        1,
        [f"class{i}" for i in range(5)],
    ),
    "mnist_split_source": (
        lambda s: MnistSplit(task="source", image_size=s, batch_size=8),
        1,
        ["0", "1", "2", "3", "4"],
    ),
    "mnist_split_target": (
        lambda s: MnistSplit(task="target", n_per_class=10, image_size=s, batch_size=8),
        1,
        ["5", "6", "7", "8", "9"],
    ),
}


@pytest.mark.parametrize("image_size", [16, 32])
@pytest.mark.parametrize("source", list(LOADERS))
def test_builtin_loaders_yield_uint8_batches(source, image_size):
    make, channels, names = LOADERS[source]
    dm = make(image_size)
    dm.setup()
    assert dm.num_classes == len(names)
    assert dm.class_names == names
    assert dm.channels == channels
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.uint8
        assert tuple(x.shape) == (8, channels, image_size, image_size)
        assert y.dtype == torch.long
        assert 0 <= int(y.min()) and int(y.max()) < len(names)
    for name in SPLITS:
        labels = getattr(dm.splits, name)[1]
        assert set(labels.tolist()) == set(range(len(names))), f"{name} lacks a class"


@pytest.mark.parametrize("channels", [3, 1])
def test_image_folder_decodes_mixed_modes_and_sizes(image_folder, channels):
    dm = ImageFolderData(root=str(image_folder), channels=channels, image_size=16, batch_size=4)
    assert dm.class_names == ["cat", "dog", "owl"]
    assert dm.num_classes == 3 and dm.channels == channels
    sizes = {name: len(getattr(dm.splits, name)[1]) for name in SPLITS}
    assert sum(sizes.values()) == 36 and min(sizes.values()) >= 3
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (4, channels, 16, 16)
    assert set(y.tolist()) <= {0, 1, 2}
    # the fixture makes each class brighter than the one before: decoding kept the pixels
    images = torch.cat([getattr(dm.splits, name)[0] for name in SPLITS]).float()
    labels = torch.cat([getattr(dm.splits, name)[1] for name in SPLITS])
    brightness = [images[labels == c].mean().item() for c in range(3)]
    assert brightness[0] + 30 < brightness[1] and brightness[1] + 30 < brightness[2]
    assert_disjoint_splits(dm)


# -- the class-split transfer task ----------------------------------------------------------------


def mnist_label_of() -> dict[str, int]:
    images, labels = mnist5k_arrays()
    return dict(zip(row_hashes(images), labels.tolist(), strict=True))


@pytest.mark.parametrize("task", ["source", "target"])
def test_mnist_split_tasks_cover_their_digits_without_overlap(task):
    dm = MnistSplit(task=task, n_per_class=20, n_val_per_class=10, image_size=28)
    dm.setup()
    first = 0 if task == "source" else 5
    assert dm.class_names == [str(d) for d in range(first, first + 5)]
    assert_disjoint_splits(dm)
    label_of = mnist_label_of()
    total = 0
    for name in SPLITS:
        x, y = getattr(dm.splits, name)
        total += len(y)
        assert set(y.tolist()) == set(range(5))
        # label k is digit first + k, and every image really is that digit
        assert [label_of[h] for h in row_hashes(x)] == (y + first).tolist()
    assert total == 2500  # all 500 images of each of the task's 5 digits


@pytest.mark.parametrize(
    ("n_per_class", "n_val_per_class"),
    [
        (1, 50),
        (10, 10),
        (20, 20),
        (100, 50),
        (449, 50),
        (50, 50),
    ],
)
def test_mnist_split_target_has_exactly_n_per_class(n_per_class, n_val_per_class):
    dm = MnistSplit(task="target", n_per_class=n_per_class, n_val_per_class=n_val_per_class)
    dm.setup()
    assert counts(dm.splits.val[1], 5) == [n_val_per_class] * 5
    assert counts(dm.splits.train[1], 5) == [n_per_class] * 5
    assert len(dm.splits.train[1]) == 5 * n_per_class


def test_mnist_split_target_without_n_per_class_uses_all_remaining():
    dm = MnistSplit(task="target", n_per_class=None, n_val_per_class=20)
    dm.setup()
    sizes = [len(getattr(dm.splits, name)[1]) for name in SPLITS]
    assert sizes[1] == 100 and sum(sizes) == 2500
    assert sizes[0] > 1000  # the rest, minus a test share


def test_held_out_batches_mix_the_classes():
    # MNIST 5k is stored class by class; in stored order the first batches would hold one digit
    dm = MnistSplit(task="target", n_per_class=10, batch_size=32)
    dm.setup()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        _, y = next(iter(loader))
        assert len(set(y.tolist())) == 5


@pytest.mark.parametrize(("n_per_class", "n_val_per_class"), [(0, 50), (450, 50), (495, 5)])
def test_mnist_split_n_per_class_out_of_range(n_per_class, n_val_per_class):
    with pytest.raises(ConfigError, match="data.n_per_class"):
        MnistSplit(task="target", n_per_class=n_per_class, n_val_per_class=n_val_per_class)


def test_mnist_split_unknown_task():
    with pytest.raises(ConfigError, match="data.task"):
        MnistSplit(task="middle")


# -- determinism and stratification ---------------------------------------------------------------


def split_tensors(dm: ImageDataModule) -> list[torch.Tensor]:
    dm.setup()
    return [t for name in SPLITS for t in getattr(dm.splits, name)]


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: Digits(seed=seed),
        lambda seed: MnistSplit(task="target", n_per_class=10, seed=seed),
        lambda seed: MnistSplit(task="source", seed=seed),
    ],
    ids=["digits", "mnist_split_target", "mnist_split_source"],
)
def test_splits_are_deterministic_per_seed(make):
    first, again, other = split_tensors(make(0)), split_tensors(make(0)), split_tensors(make(1))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])  # another seed, other training images
    assert not torch.equal(first[2], other[2])


def test_image_folder_splits_are_deterministic_per_seed(image_folder):
    def val_hashes(seed):
        dm = ImageFolderData(root=str(image_folder), image_size=8, seed=seed)
        dm.setup()
        return sorted(row_hashes(dm.splits.val[0]))

    assert val_hashes(3) == val_hashes(3)
    assert val_hashes(3) != val_hashes(4)


def test_stratified_indices_partition_and_keep_class_shares():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    parts = stratified_indices(labels, [0.2, 0.2], seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))  # a partition
    assert [len(p) for p in parts] == [60, 20, 20]
    for part in parts[1:]:
        assert np.abs(np.bincount(labels[part], minlength=3) - [12, 6, 2]).max() <= 1
    again = stratified_indices(labels, [0.2, 0.2], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = stratified_indices(labels, [0.2, 0.2], seed=1)
    assert not np.array_equal(parts[1], other[1])


def test_digits_val_split_is_stratified():
    dm = Digits(val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    all_labels = torch.cat([getattr(dm.splits, name)[1] for name in SPLITS])
    overall = np.bincount(all_labels.numpy()) / len(all_labels)
    for name in ("val", "test"):
        y = getattr(dm.splits, name)[1]
        assert np.abs(np.bincount(y.numpy(), minlength=10) - overall * len(y)).max() <= 1.0


# -- image folders with split sub-folders ---------------------------------------------------------


def make_split_tree(root: Path, layout: dict[str, dict[str, int]]) -> None:
    """root/<split>/<class>/<i>.png, each image one flat grey value: 40*split + 10*class + i."""
    for s, (split, classes) in enumerate(layout.items()):
        for c, (name, n) in enumerate(classes.items()):
            for i in range(n):
                save_png(root / split / name / f"{i}.png", 40 * s + 10 * c + i)


def pixel_values(images: torch.Tensor) -> set[int]:
    return {int(v) for v in images.flatten().unique()}


def test_image_folder_train_val_layout(tmp_path):
    make_split_tree(tmp_path, {"train": {"a": 4, "b": 4, "c": 4}, "val": {"a": 2, "b": 2, "c": 2}})
    dm = ImageFolderData(root=str(tmp_path), image_size=8, batch_size=4)
    dm.setup()
    assert dm.class_names == ["a", "b", "c"]
    assert counts(dm.splits.train[1], 3) == [4, 4, 4]
    # no test/ folder: val/ is halved, stratified, into val and test
    assert counts(dm.splits.val[1], 3) == [1, 1, 1]
    assert counts(dm.splits.test[1], 3) == [1, 1, 1]
    assert pixel_values(dm.splits.train[0]) <= set(range(0, 40))
    assert pixel_values(torch.cat([dm.splits.val[0], dm.splits.test[0]])) <= set(range(40, 80))
    assert_disjoint_splits(dm)
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 3, 8, 8)


def test_image_folder_train_val_test_layout(tmp_path):
    make_split_tree(
        tmp_path,
        {"train": {"a": 3, "b": 3}, "val": {"a": 2, "b": 1}, "test": {"a": 1, "b": 2}},
    )
    dm = ImageFolderData(root=str(tmp_path), channels=1, image_size=8)
    dm.setup()
    assert counts(dm.splits.val[1], 2) == [2, 1] and counts(dm.splits.test[1], 2) == [1, 2]
    assert pixel_values(dm.splits.test[0]) <= set(range(80, 120))
    assert dm.channels == 1


def test_image_folder_class_mismatch_between_train_and_val(tmp_path):
    make_split_tree(tmp_path, {"train": {"a": 2, "b": 2}, "val": {"a": 2, "b": 2, "c": 2}})
    with pytest.raises(ConfigError, match="same class sub-folders") as info:
        ImageFolderData(root=str(tmp_path), image_size=8).setup()
    assert "val" in str(info.value) and "'c'" in str(info.value)


def test_image_folder_train_without_val_folder(tmp_path):
    make_split_tree(tmp_path, {"train": {"a": 2, "b": 2}})
    with pytest.raises(ConfigError, match="data.root") as info:
        ImageFolderData(root=str(tmp_path), image_size=8).setup()
    assert str(tmp_path / "val") in str(info.value)


def test_image_folder_val_too_small_to_halve(tmp_path):
    # no test/ folder and one val image per class: val cannot be split into val and test
    make_split_tree(tmp_path, {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1}})
    with pytest.raises(ConfigError, match="Cannot hold out"):
        ImageFolderData(root=str(tmp_path), image_size=8).setup()


# -- bad input ------------------------------------------------------------------------------------


def test_image_folder_missing_root(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(ConfigError, match="data.root") as info:
        ImageFolderData(root=str(missing), image_size=8).setup()
    assert str(missing) in str(info.value)


def test_image_folder_empty_root(tmp_path):
    with pytest.raises(ConfigError, match="holds no images") as info:
        ImageFolderData(root=str(tmp_path), image_size=8).setup()
    assert str(tmp_path) in str(info.value)


def test_image_folder_class_folders_without_images(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError, match="holds no images") as info:
        ImageFolderData(root=str(tmp_path), image_size=8).setup()
    assert f"{tmp_path}/<class name>/" in str(info.value)


def test_image_folder_bad_settings(image_folder):
    with pytest.raises(ConfigError, match="data.channels"):
        ImageFolderData(root=str(image_folder), channels=4)
    with pytest.raises(ConfigError, match="data.image_size"):
        ImageFolderData(root=str(image_folder), image_size=None)


def test_torchvision_dataset_not_downloaded(tmp_path):
    dm = TorchvisionData(name="CIFAR10", root=str(tmp_path), download=False)
    with pytest.raises(ConfigError, match="data.download=true") as info:
        dm.setup()
    assert "CIFAR10" in str(info.value) and str(tmp_path) in str(info.value)


def test_torchvision_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="CIFAR11"):
        TorchvisionData(name="CIFAR11", root=str(tmp_path))


def test_bad_fractions_and_batch_size():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        Digits(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConfigError, match="data.batch_size"):
        Digits(batch_size=0)


# -- normalisation statistics ---------------------------------------------------------------------


class FixedData(ImageDataModule):
    """Train images with known per-channel statistics; val/test images that would shift them."""

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        train = torch.stack(
            [
                torch.zeros(40, 6, 6),  # channel 0: black
                torch.randint(0, 256, (40, 6, 6), generator=g).float(),  # channel 1: noise
                torch.full((40, 6, 6), 51.0),  # channel 2: 0.2 grey
            ],
            dim=1,
        ).to(torch.uint8)
        other = torch.full((20, 3, 6, 6), 255, dtype=torch.uint8)
        y_train, y_other = torch.arange(40) % 2, torch.arange(20) % 2
        return Splits((train, y_train), (other, y_other), (other, y_other), ["x", "y"])


def test_normalization_computed_per_channel_on_train_split():
    dm = FixedData(image_size=None)
    mean, std = dm.normalization
    train = dm.splits.train[0].double().numpy() / 255
    expected_mean = train.mean(axis=(0, 2, 3))
    expected_std = train.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1)
    assert mean == pytest.approx(expected_mean, abs=1e-5)
    assert mean[0] == 0 and mean[2] == pytest.approx(0.2, abs=1e-6) and 0.4 < mean[1] < 0.6
    assert std[1] == pytest.approx(expected_std[1], abs=1e-5)
    assert std[0] > 0 and std[2] > 0  # constant channels must not divide by zero


def test_normalization_computed_on_a_real_source():
    dm = Synthetic(num_classes=2, channels=3, image_size=16)
    mean, std = dm.normalization
    x = dm.splits.train[0].double() / 255
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-5)
    assert std == pytest.approx(x.std((0, 2, 3)).tolist(), abs=1e-5)


def test_normalization_uses_given_values():
    dm = FixedData(image_size=None, mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    mean, std = dm.normalization
    assert mean == pytest.approx([0.1, 0.2, 0.3]) and std == pytest.approx([0.4, 0.5, 0.6])
    dm = Digits(mean=[0.5], std=[0.25])
    assert dm.normalization == ([0.5], [0.25])


def test_normalization_scalar_is_broadcast_and_wrong_length_rejected():
    mean, std = FixedData(image_size=None, mean=0.5, std=0.2).normalization
    assert mean == pytest.approx([0.5] * 3) and std == pytest.approx([0.2] * 3)
    dm = FixedData(image_size=None, mean=[0.5, 0.5], std=[0.2, 0.2])
    with pytest.raises(ConfigError, match="3 channels"):
        dm.setup()


@pytest.mark.parametrize("name", ["cifar10", "CIFAR10", "Cifar10"])
def test_torchvision_names_in_any_capitalisation(tmp_path, name):
    assert TorchvisionData(name=name, root=str(tmp_path)).name == "CIFAR10"
