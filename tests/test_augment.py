"""Augmentation: per-image pipelines on every built-in dataset, batch mixing, determinism,
evaluation transforms, the augmentation x strategy grid, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

import test_grid
from conftest import CONF, check_refused
from transferlab.augment import (
    Augmentation,
    BatchMix,
    basic,
    cutmix,
    mix_batch,
    mixup,
    mixup_cutmix,
    pretrained_normalization,
    randaugment,
    strong,
)
from transferlab.data import Digits, ImageFolderData, MnistSplit, Synthetic, TorchvisionData
from transferlab.errors import ConfigError
from transferlab.preview import label_weights
from transferlab.preview import main as preview_main
from transferlab.train import train

PIPELINES = {"basic": basic, "strong": strong, "randaugment": randaugment}
fake_mnist_root = test_grid.fake_mnist_root  # the tiny on-disk MNIST fixture, shared
AUGMENTATIONS = sorted(p.stem for p in (CONF / "augmentation").glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))


@pytest.fixture(scope="module")
def sources(image_folder, fake_mnist_root):
    """Every kind of built-in source, loaded once: greyscale digits (MNIST 28 px, 8x8 digits),
    RGB and greyscale synthetic images, folders of mixed sizes and modes, torchvision MNIST."""
    common = {"batch_size": 8, "image_size": 32}
    dms = {
        "mnist_split": MnistSplit(**common),
        "digits": Digits(**common),
        "synthetic_rgb": Synthetic(num_samples=64, **common),
        "synthetic_grey": Synthetic(num_samples=64, channels=1, **common),
        "folder_rgb": ImageFolderData(root=str(image_folder), channels=3, **common),
        "folder_grey": ImageFolderData(root=str(image_folder), channels=1, **common),
        "torchvision": TorchvisionData(name="MNIST", root=str(fake_mnist_root), **common),
    }
    for dm in dms.values():
        dm.setup()
    return dms


@pytest.mark.parametrize(
    ("pipeline", "crop_size"), [("basic", None), ("strong", None), ("randaugment", 24)]
)
def test_pipelines_give_uint8_images_of_the_model_size_on_every_source(
    sources, pipeline, crop_size
):
    size = crop_size or 32
    for name, dm in sources.items():
        dm.augmentation, dm.crop_size = Augmentation(image=PIPELINES[pipeline]), crop_size
        x, _ = next(iter(dm.train_dataloader()))
        assert x.dtype == torch.uint8, name
        assert tuple(x.shape) == (8, dm.channels, size, size), name
        assert int(x.max()) > int(x.min()), f"{name}: the images went flat"
        v, _ = next(iter(dm.val_dataloader()))
        assert v.dtype == torch.uint8 and tuple(v.shape[1:]) == (dm.channels, size, size), name


def test_augmented_images_differ_from_the_originals():
    x = Synthetic(num_samples=16, seed=0).arrays()[0]
    torch.manual_seed(0)
    for name, factory in PIPELINES.items():
        out = torch.stack([factory(32, 3)(img) for img in x])
        assert (out != x).any(dim=(1, 2, 3)).float().mean() > 0.5, name


def transform_types(transform) -> set[type]:
    return {type(t) for t in transform.transforms}


def test_digits_are_not_flipped_by_default_but_can_be():
    for factory in PIPELINES.values():
        assert v2.RandomHorizontalFlip not in transform_types(factory(32, 1, flip_safe=False))
        assert v2.RandomHorizontalFlip in transform_types(factory(32, 3, flip_safe=True))
        forced = factory(32, 1, flip_safe=False, hflip=0.5)
        assert v2.RandomHorizontalFlip in transform_types(forced)
    assert not MnistSplit.flip_safe and not Digits.flip_safe and Synthetic.flip_safe


def test_greyscale_pipelines_leave_out_colour_only_operations():
    grey, rgb = strong(32, 1), strong(32, 3)
    assert v2.RandomGrayscale in transform_types(rgb)
    assert v2.RandomGrayscale not in transform_types(grey)
    jitter = next(t for t in grey.transforms if isinstance(t, v2.ColorJitter))
    assert jitter.saturation is None and jitter.hue is None and jitter.brightness is not None


def test_same_seed_same_augmented_images():
    x = Synthetic(num_samples=8, seed=0).arrays()[0]
    for factory in PIPELINES.values():
        runs = []
        for _ in range(2):
            torch.manual_seed(3)
            t = factory(32, 3)
            runs.append(torch.stack([t(img) for img in x]))
        torch.testing.assert_close(runs[0], runs[1])


def test_same_seed_same_training_batch_through_the_loader():
    batches = []
    for _ in range(2):
        torch.manual_seed(5)
        dm = Synthetic(num_samples=64, batch_size=8, augmentation=Augmentation(image=strong))
        batches.append(next(iter(dm.train_dataloader())))
    torch.testing.assert_close(batches[0], batches[1])


def test_evaluation_transform_is_a_deterministic_centre_crop():
    dm = Synthetic(num_samples=64, batch_size=8, crop_size=24, augmentation=Augmentation(strong))
    dm.setup()
    first, second = list(dm.val_dataloader()), list(dm.val_dataloader())
    for (a, ya), (b, yb) in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ya, yb)
    stored = dm.splits.val[0][:8]
    torch.testing.assert_close(first[0][0], stored[..., 4:28, 4:28])


def labelled_batch(n=8, classes=4, size=16):
    """Each image one distinct flat grey level, so a pixel tells which image it came from."""
    levels = torch.arange(n, dtype=torch.uint8) * 30 + 10
    x = levels.view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return x, torch.arange(n) % classes


@pytest.mark.parametrize("spec", [mixup(0.4), cutmix(1.0), mixup_cutmix()], ids=str)
def test_soft_targets_sum_to_one_and_keep_hard_label_mass(spec):
    x, y = labelled_batch()
    torch.manual_seed(0)
    mixed, soft = spec.bind(4, len(y))(x, y)
    assert mixed.dtype == torch.uint8 and mixed.shape == x.shape
    assert soft.shape == (8, 4)
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    assert (soft.gather(1, y[:, None]) >= 0).all()


def test_cutmix_lambda_is_the_share_of_pixels_kept():
    x, y = labelled_batch(classes=8)
    for seed in range(5):
        torch.manual_seed(seed)
        mixed, soft = mix_batch(x, y, BatchMix("cutmix", cutmix_alpha=1.0).transform(8))
        kept = (mixed == x).all(1).float().mean((1, 2))  # image i's own pixels left
        torch.testing.assert_close(soft.gather(1, y[:, None]).squeeze(1), kept)
        pasted = (mixed == x.roll(1, 0)).all(1).float().mean((1, 2))
        torch.testing.assert_close(soft.gather(1, y.roll(1)[:, None]).squeeze(1), pasted)


def test_mixup_images_and_targets_use_the_same_lambda():
    x, y = labelled_batch(classes=8)
    torch.manual_seed(1)
    mixed, soft = mix_batch(x, y, BatchMix("mixup", alpha=1.0).transform(8))
    lam = soft.gather(1, y[:, None]).squeeze(1)
    expected = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x.roll(1, 0)
    assert (mixed.float() - expected).abs().max() <= 0.5 + 1e-4


def test_same_seed_same_mixed_batch():
    x, y = labelled_batch()
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(mixup_cutmix().bind(4, 8)(x, y))
    torch.testing.assert_close(runs[0], runs[1])


def test_label_smoothing_composes_with_soft_targets():
    logits, soft = torch.randn(4, 5), torch.softmax(torch.randn(4, 5), -1)
    eps = 0.1
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, soft)
    by_hand = -(((1 - eps) * soft + eps / 5) * logits.log_softmax(-1)).sum(1).mean()
    torch.testing.assert_close(smoothed, by_hand)


def test_pretrained_statistics_average_to_grey():
    cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    mean, std = pretrained_normalization(cfg, 3)
    assert mean == pytest.approx(cfg["mean"]) and std == pytest.approx(cfg["std"])
    mean, std = pretrained_normalization(cfg, 1)
    assert mean == pytest.approx([0.449]) and std == pytest.approx([0.226])
    assert pretrained_normalization({}, 3) is None


def check_fast_run(make_cfg, overrides):
    """A fast_dev_run writes metrics.json with a sane accuracy and a positive training loss."""
    cfg = make_cfg(
        ["+trainer.fast_dev_run=true", "data=synthetic", "data.batch_size=8", *overrides]
    )
    metrics = train(cfg)
    assert Path(cfg.paths.output_dir, "metrics.json").exists()
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/loss_epoch"] > 0


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_every_augmentation_trains(make_cfg, augmentation):
    check_fast_run(make_cfg, [f"augmentation={augmentation}", "loss.label_smoothing=0.1"])


@pytest.mark.smoke
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_with_mixing(make_cfg, strategy):
    check_fast_run(make_cfg, [f"strategy={strategy}", "augmentation=mixup_cutmix"])


def test_image_pipeline_and_mixing_compose(make_cfg):
    check_fast_run(
        make_cfg, ["augmentation=cutmix", "augmentation/image=strong", "data.crop_size=24"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_augmentation_x_strategy_grid(make_cfg, augmentation, strategy):
    check_fast_run(make_cfg, [f"augmentation={augmentation}", f"strategy={strategy}"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["augmentation=mixup", "augmentation.batch.alpha=0"],
            "augmentation.batch.alpha must be > 0",
        ),
        (
            ["augmentation=cutmix", "augmentation.batch.alpha=-1"],
            "augmentation.batch.alpha must be > 0",
        ),
        (
            ["augmentation=mixup_cutmix", "augmentation.batch.mixup_alpha=0"],
            "augmentation.batch.mixup_alpha must be > 0",
        ),
        (
            ["augmentation=mixup_cutmix", "augmentation.batch.cutmix_alpha=0"],
            "augmentation.batch.cutmix_alpha must be > 0",
        ),
        (["augmentation=mixup", "data.batch_size=1"], "data.batch_size must be at least 2"),
        (["data.crop_size=40"], "set data.image_size to at least 40"),
        (["data.image_size=null", "data.crop_size=64"], "does not fit the 32-px loaded images"),
        (["augmentation=strong", "augmentation.image.blur_kernel=4"], "blur_kernel must be odd"),
    ],
)
def test_bad_augmentation_input_is_one_sentence(make_cfg, capsys, overrides, message):
    cfg = make_cfg(["data=synthetic", *overrides])
    check_refused(cfg, capsys, message)


def test_bad_pipeline_settings():
    with pytest.raises(ConfigError, match="scale must satisfy"):
        basic(32, 3, scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="magnitude in"):
        randaugment(32, 3, magnitude=40)
    with pytest.raises(ConfigError, match="mode must be one of"):
        BatchMix("mixcut")


def test_preview_writes_a_grid_with_label_weights(tmp_path, capsys):
    out = tmp_path / "preview.png"
    preview_main(
        ["data=synthetic", "augmentation=cutmix", "augmentation/image=strong", f"--out={out}"]
        + ["--images=3", "--versions=2", "backbone=tiny"]
    )
    assert out.stat().st_size > 10_000 and "preview written" in capsys.readouterr().out
    soft = torch.tensor([0.0, 0.3, 0.7])
    assert label_weights(soft, ["a", "b", "c"]) == "c 0.70 / b 0.30"


def test_preview_bad_input_is_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preview_main(["data=synthetic", "data.crop_size=99", f"--out={tmp_path / 'p.png'}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: data.crop_size 99 does not fit")
