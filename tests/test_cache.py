"""The frozen-backbone feature cache: when it applies, that it trains the same head, and that
runs differing only in head settings share one cache file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from transferlab.build import build_datamodule, build_module, load_module
from transferlab.errors import ConfigError
from transferlab.train import train

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
    assert [p.name.rsplit("-", 1)[1] for p in cache_files(cached_cfg)] == [
        "test.pt",
        "train.pt",
        "val.pt",
    ]
    assert cached["time/feature_pass_s"] > 0
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
    paths = cache_files(first)
    stamps = [p.stat().st_mtime_ns for p in paths]
    caplog.set_level("INFO", logger="transferlab")
    for overrides in (["optimizer.lr=0.01"], ["head=mlp", "loss.label_smoothing=0.1"]):
        cfg = make_cfg([*PROBE, "trainer.max_epochs=1", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / overrides[0])
        train(cfg)
    assert cache_files(first) == paths and [p.stat().st_mtime_ns for p in paths] == stamps
    assert caplog.text.count("feature cache: reusing") == 2 * 3  # train, val, test each
    assert "feature cache: computing" not in caplog.text


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
    backbone, data = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("backbone", "data"))
    key = cache_key(backbone, data, module)
    assert cache_key(backbone, {**data, "batch_size": 7}, module) == key
    assert cache_key(backbone, {**data, "image_size": 24}, module) != key
    assert cache_key({**backbone, "drop_path_rate": 0.1}, data, module) != key
    with torch.no_grad():
        next(module.backbone.model.parameters()).add_(1.0)
    assert cache_key(backbone, data, module) != key


def test_test_features_are_computed_only_when_testing(make_cfg):
    from transferlab.cache import FeatureCache

    cfg, module, dm = module_and_data(make_cfg, ["strategy=feature_extraction"])
    backbone, data = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("backbone", "data"))
    cache = FeatureCache(backbone, data, module, dm, Path(cfg.paths.cache_dir))
    x, y = cache["train"]
    assert x.shape == (len(dm.splits.train[1]), module.backbone.num_features)
    assert torch.equal(y, dm.splits.train[1])
    assert cache.path("train").is_file() and not cache.path("test").exists()
    assert module.training  # the pass puts the module back in its mode


def test_deferred_checkpoints_write_each_file_once_with_its_latest_content(tmp_path):
    from transferlab.cache import DeferredCheckpointIO

    io = DeferredCheckpointIO()
    weight = torch.zeros(3)
    for epoch in range(4):
        weight.add_(1.0)  # the module keeps training after each save
        io.save_checkpoint({"w": weight, "epoch": epoch}, tmp_path / "last.ckpt")
        if epoch == 1:
            io.save_checkpoint({"w": weight, "epoch": epoch}, tmp_path / "best.ckpt")
    io.save_checkpoint({"w": weight}, tmp_path / "dropped.ckpt")
    io.remove_checkpoint(tmp_path / "dropped.ckpt")
    assert list(tmp_path.iterdir()) == []  # nothing written during the stage
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert best["epoch"] == 1 and torch.equal(best["w"], torch.full((3,), 2.0))
    last = io.load_checkpoint(tmp_path / "last.ckpt")
    assert last["epoch"] == 3 and torch.equal(last["w"], torch.full((3,), 4.0))


def test_a_deferred_checkpoint_is_a_copy_of_every_nested_container_and_tensor(tmp_path):
    from collections import OrderedDict

    from transferlab.cache import DeferredCheckpointIO

    io = DeferredCheckpointIO()
    moment = torch.zeros(2)
    steps = [0, 1]
    group = {"lr": 0.1, "params": [0, 1]}
    checkpoint = {
        "optimizer_states": [{"state": {0: {"exp_avg": moment}}, "param_groups": [group]}],
        "callbacks": {"LRHistory": {"steps": steps, "pair": (moment, "head")}},
        "state_dict": OrderedDict(w=moment),
        "epoch": 0,
    }
    io.save_checkpoint(checkpoint, tmp_path / "last.ckpt")
    moment.add_(5.0)  # training goes on after the save: tensors, lists and dicts change
    steps.append(2)
    group["lr"] = 0.0
    saved = io.pending[str(tmp_path / "last.ckpt")][0]
    optimizer = saved["optimizer_states"][0]
    assert torch.equal(optimizer["state"][0]["exp_avg"], torch.zeros(2))
    assert optimizer["param_groups"][0] == {"lr": 0.1, "params": [0, 1]}
    history = saved["callbacks"]["LRHistory"]
    assert history["steps"] == [0, 1] and history["pair"][1] == "head"
    assert isinstance(history["pair"], tuple) and torch.equal(history["pair"][0], torch.zeros(2))
    assert torch.equal(saved["state_dict"]["w"], torch.zeros(2))


def test_a_cached_run_writes_its_checkpoints_once_at_the_end_of_fitting(make_cfg, monkeypatch):
    from transferlab.files import FileCheckpointIO

    writes = []
    real_save = FileCheckpointIO.save_checkpoint

    def counting_save(self, checkpoint, path, *args, **kwargs):
        writes.append((Path(path).name, checkpoint["epoch"]))
        return real_save(self, checkpoint, path, *args, **kwargs)

    monkeypatch.setattr(FileCheckpointIO, "save_checkpoint", counting_save)
    cfg = make_cfg([*PROBE, "trainer.max_epochs=4"])
    train(cfg)
    assert sorted(name for name, _ in writes) == ["best.ckpt", "last.ckpt"]
    assert dict(writes)["last.ckpt"] == 3
    last = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)
    assert last["epoch"] == 3


def test_deferred_checkpoints_copy_fixed_tensors_once_and_the_rest_at_every_save(tmp_path):
    from transferlab.cache import DeferredCheckpointIO

    io = DeferredCheckpointIO(fixed_prefix="backbone.")
    backbone, head = torch.ones(3), torch.zeros(2)
    for epoch in range(3):
        head.add_(1.0)
        state = {"backbone.w": backbone, "head.w": head}
        io.save_checkpoint({"state_dict": state, "epoch": epoch}, tmp_path / f"{epoch}.ckpt")
    copies = [io.pending[str(tmp_path / f"{e}.ckpt")][0]["state_dict"] for e in range(3)]
    assert copies[0]["backbone.w"] is copies[2]["backbone.w"]  # one copy shared by every save
    assert copies[0]["backbone.w"] is not backbone  # a copy all the same
    assert [c["head.w"][0].item() for c in copies] == [1.0, 2.0, 3.0]  # each save's own values
    io.teardown()
    assert torch.equal(
        torch.load(tmp_path / "2.ckpt", weights_only=True)["state_dict"]["backbone.w"], backbone
    )
