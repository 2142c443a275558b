"""Precise BatchNorm (``strategy.precise_bn``): before each validation the running statistics of
the backbone's training BatchNorm layers are re-estimated on the training images; the weights
and the training trajectory do not change, frozen layers keep theirs."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from transferlab.batchnorm import (
    batchnorm_layers,
    in_fixed_random_order,
    read_layer_statistics,
    recalibrate_batchnorm,
    reestimate_statistics,
)
from transferlab.build import build_datamodule, build_experiment, build_module


def test_reestimation_averages_the_batches_in_the_chosen_layers_only():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2)).eval()
    untouched = read_layer_statistics([model[1]])
    batches = [torch.randn(32, 2) * 2 + 3 for _ in range(3)]
    assert reestimate_statistics([model[0]], batches, model) == 3
    torch.testing.assert_close(model[0].running_mean, torch.cat(batches).mean(0), atol=1e-5, rtol=0)
    per_batch_var = torch.stack([b.var(0) for b in batches]).mean(0)  # the plain average
    torch.testing.assert_close(model[0].running_var, per_batch_var, atol=1e-4, rtol=0)
    assert torch.equal(model[1].running_mean, untouched[0]["running_mean"])
    assert not model[0].training and model[0].momentum == 0.1  # mode and momentum restored


def test_a_split_stored_class_by_class_is_read_in_a_fixed_random_order():
    """Per-batch variances average to the population's only when each batch samples the whole
    set: two classes 10 apart, stored one after the other, have a variance of about 26, and
    one-class batches would report about 1."""
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.cat([torch.randn(256, 1), torch.randn(256, 1) + 10])
    loader = DataLoader(TensorDataset(x, torch.arange(512) // 256), batch_size=32)
    shuffled = in_fixed_random_order(loader)
    seen = torch.cat([y for _, y in shuffled])
    assert sorted(seen.tolist()) == sorted((torch.arange(512) // 256).tolist())  # each once
    assert torch.equal(seen, torch.cat([y for _, y in in_fixed_random_order(loader)]))  # fixed
    bn = nn.BatchNorm1d(1)
    reestimate_statistics([bn], (b for b, _ in shuffled), bn)
    assert 22 < bn.running_var.item() < 30
    reestimate_statistics([bn], (b for b, _ in loader), bn)
    assert bn.running_var.item() < 2  # what the stored order would have given


def test_no_batches_leave_the_statistics_as_they_were():
    bn = nn.BatchNorm1d(2)
    bn.running_mean.fill_(4.0)
    assert reestimate_statistics([bn], [], bn) == 0
    assert torch.equal(bn.running_mean, torch.full((2,), 4.0))


def fit(make_cfg, overrides):
    cfg = make_cfg(["data=synthetic", "data.num_samples=96", "data.batch_size=16", *overrides])
    dm = build_datamodule(cfg)
    dm.setup()
    torch.manual_seed(0)  # both runs start from the same random backbone
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    before = copy.deepcopy(module.state_dict())
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    return module, dm, before


def training_layers(module) -> list[nn.Module]:
    frozen = set(module.frozen_batchnorms())
    return [bn for bn in batchnorm_layers(module.backbone) if bn not in frozen]


def test_statistics_come_from_the_training_images_and_training_is_unchanged(make_cfg):
    common = ["strategy=partial", "strategy.trainable_groups=1", "seed=3"]
    precise, dm, before = fit(make_cfg, [*common, "strategy.precise_bn=true"])
    plain, _, _ = fit(make_cfg, [*common, "strategy.precise_bn=false"])
    assert precise.frozen_batchnorms() and training_layers(precise)

    # the same weights: train-mode BatchNorm uses batch statistics, whatever the running ones
    state = precise.state_dict()
    for key, value in plain.state_dict().items():
        if "running_" not in key and "num_batches" not in key:
            assert torch.equal(value, state[key]), key

    # the training layers hold the statistics of the training images under the final weights,
    # which the running averages of the run without precise BN are not
    expected = copy.deepcopy(plain)
    images = [x for x, _ in in_fixed_random_order(dm.eval_dataloader("train"))]
    reestimate_statistics(training_layers(expected), images, expected.image_features)
    got = read_layer_statistics(training_layers(precise))
    want = read_layer_statistics(training_layers(expected))
    lagging = read_layer_statistics(training_layers(plain))
    for g, w, lag in zip(got, want, lagging, strict=True):
        for k in ("running_mean", "running_var"):
            torch.testing.assert_close(g[k], w[k], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(lag["running_var"], w["running_var"], atol=1e-5, rtol=1e-4)

    # frozen groups keep the statistics they were built with
    names = {id(m): n for n, m in precise.named_modules()}
    for bn in precise.frozen_batchnorms():
        key = f"{names[id(bn)]}.running_var"
        assert torch.equal(state[key], before[key]), key


@pytest.mark.parametrize("method", ["none", "dann"])
def test_a_domain_pair_reestimates_on_what_its_training_step_passes(make_cfg, method):
    """Source-only training passes source images through the backbone; with an alignment loss
    source and target images pass together, and precise BN sees them joined the same way."""
    overrides = ["experiment=dann_paper", "backbone.batch_norm=true", "data.batch_size=8"]
    overrides += [f"domain_adaptation={method}", "strategy.precise_bn=true"]
    cfg = make_cfg(
        [*overrides, "+trainer.fast_dev_run=true", "trainer.accelerator=cpu"], fast=False
    )
    run = build_experiment(cfg)
    run.module.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    run.module.trainer.datamodule = run.datamodule
    run.datamodule.setup()
    batch = next(run.module.statistics_batches())
    source = next(iter(in_fixed_random_order(run.datamodule.eval_dataloader("train"))))[0]
    assert batch.shape[0] == len(source) * (1 if method == "none" else 2)
    if method == "dann":
        torch.testing.assert_close(batch[: len(source)], run.module.normalised(source))
    assert recalibrate_batchnorm(run.module) > 0
