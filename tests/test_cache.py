"""The frozen-backbone feature cache: when it applies, that it trains the same head, and that
runs differing only in head settings share one cache file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from transferlab.errors import ConfigError
from transferlab.evaluate import load_module
from transferlab.train import build_datamodule, build_module, train

PROBE = [
    "data=synthetic",
    "strategy=feature_extraction",
    "trainer.max_epochs=3",
    "logger=none",
]


def cache_files(cfg) -> list[Path]:
    return sorted(Path(cfg.paths.cache_dir, "features").glob("*.pt"))


def test_cached_probe_trains_the_same_head_as_the_uncached_one(make_cfg, tmp_path):
    cached_cfg = make_cfg(PROBE)
    cached = train(cached_cfg)
    assert len(cache_files(cached_cfg)) == 1
    plain_cfg = make_cfg([*PROBE, "strategy.cache_features=false"])
    with open_dict(plain_cfg):
        plain_cfg.paths.output_dir = str(tmp_path / "plain")
    plain = train(plain_cfg)
    for key in ("val/acc", "test/acc", "test/loss", "train/loss"):
        assert cached[key] == pytest.approx(plain[key], abs=1e-4), key
    assert cached["params/trainable"] == plain["params/trainable"]


def test_head_sweep_reuses_one_cache_file(make_cfg, tmp_path, caplog):
    first = make_cfg([*PROBE, "trainer.max_epochs=1"])
    train(first)
    [path] = cache_files(first)
    stamp = path.stat().st_mtime_ns
    caplog.set_level("INFO", logger="transferlab")
    for overrides in (["optimizer.lr=0.01"], ["head=mlp", "loss.label_smoothing=0.1"]):
        cfg = make_cfg([*PROBE, "trainer.max_epochs=1", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / overrides[0])
        train(cfg)
    assert cache_files(first) == [path] and path.stat().st_mtime_ns == stamp
    assert caplog.text.count("feature cache: reusing") == 2


def test_a_checkpoint_trained_on_cached_features_scores_the_same_on_images(make_cfg):
    cfg = make_cfg(PROBE)
    metrics = train(cfg)
    module, _ = load_module(str(Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")))
    assert module.inputs_are_features is False
    dm = build_datamodule(cfg, train_augmentation=False)
    dm.setup()
    x, y = dm.splits.test
    with torch.no_grad():
        acc = (module.eval()(x).argmax(-1) == y).float().mean().item()
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)


def module_and_data(make_cfg, overrides):
    cfg = make_cfg(["data=synthetic", *overrides])
    dm = build_datamodule(cfg)
    dm.setup()
    return cfg, build_module(cfg, dm.num_classes, dm.channels, *dm.normalization), dm


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["strategy=full"], "the backbone trains"),
        (["strategy=gradual_unfreeze"], "the backbone trains"),
        (["strategy=feature_extraction", "strategy.bn=train"], "BatchNorm statistics"),
        (["strategy=feature_extraction", "augmentation=basic"], "training images are augmented"),
        (["strategy=feature_extraction", "augmentation=mixup"], "batches are mixed"),
    ],
)
def test_auto_skips_the_cache_and_true_says_why(make_cfg, overrides, reason):
    from transferlab.cache import use_cache

    _, module, dm = module_and_data(make_cfg, overrides)
    assert use_cache("auto", module, dm) is False
    with pytest.raises(ConfigError, match=f"strategy.cache_features=true needs .*{reason}"):
        use_cache(True, module, dm)


def test_cache_key_follows_weights_and_data_but_not_loader_settings(make_cfg):
    from transferlab.cache import cache_key

    cfg, module, _ = module_and_data(make_cfg, ["strategy=feature_extraction"])
    key = cache_key(cfg, module)
    with open_dict(cfg):
        cfg.data.batch_size = 7
    assert cache_key(cfg, module) == key
    cfg.data.image_size = 24
    assert cache_key(cfg, module) != key
    cfg.data.image_size = 32
    with torch.no_grad():
        next(module.backbone.model.parameters()).add_(1.0)
    assert cache_key(cfg, module) != key
