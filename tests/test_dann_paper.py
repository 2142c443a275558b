"""The DANN paper's set-up: its MNIST network as a backbone, per-domain input statistics, AdaBN
as a method, and the ``experiment=dann_paper`` protocol running end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferlab.backbones.small import create_dann_mnist
from transferlab.batchnorm import estimate_statistics, read_statistics, using_statistics
from transferlab.build import build_datamodule, build_experiment
from transferlab.errors import ConfigError
from transferlab.train import train

# not the tiny test backbone (a command-line backbone= would replace the experiment's network)
CPU = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
PAPER = ["experiment=dann_paper", *CPU, "data.batch_size=8", "+trainer.fast_dev_run=true"]


def test_the_paper_network_has_two_conv_groups_and_the_paper_feature_width():
    backbone = create_dann_mnist(in_chans=3, image_size=28)
    assert [g.name for g in backbone.groups] == ["conv1", "conv2"]
    assert backbone(torch.zeros(2, 3, 28, 28)).shape == (2, 48 * 4 * 4)
    assert backbone.num_features == 768
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    with_bn = create_dann_mnist(in_chans=3, batch_norm=True)
    # a block's BatchNorm freezes and trains with its convolution
    assert with_bn.groups[0].param_names == ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"pretrained": True}, "has no hub weights"), ({"image_size": 12}, "data.image_size=28")],
)
def test_the_paper_network_refuses_what_it_cannot_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_dann_mnist(**kwargs)


def test_adabn_estimates_the_new_domain_statistics_and_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.BatchNorm1d(2)).eval()
    before = read_statistics(model)
    batches = [torch.randn(64, 2) * 3 + 5 for _ in range(4)]
    stats = estimate_statistics(model, batches, model)
    torch.testing.assert_close(
        stats[0]["running_mean"], torch.cat(batches).mean(0), atol=1e-5, rtol=0
    )
    assert torch.equal(read_statistics(model)[0]["running_mean"], before[0]["running_mean"])
    assert not model[0].training and model[0].momentum == 0.1
    with using_statistics(model, stats):
        assert torch.equal(model[0].running_mean, stats[0]["running_mean"])
    assert torch.equal(model[0].running_mean, before[0]["running_mean"])


def test_per_domain_statistics_normalise_each_domain_with_its_own_mean(make_cfg):
    cfg = make_cfg(["experiment=dann_paper", *CPU], fast=False)
    dm = build_datamodule(cfg, train_augmentation=False)
    (source_mean, std), (target_mean, target_std) = dm.normalization, dm.target_normalization
    own = (dm.target_splits.train[0].float() / 255).mean((0, 2, 3))
    torch.testing.assert_close(torch.tensor(target_mean), own)
    assert std == target_std == [1.0, 1.0, 1.0]  # the paper subtracts means only
    assert abs(source_mean[0] - target_mean[0]) > 0.1  # grey digits vs colour photos
    module = build_experiment(cfg).module
    x = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    expected = x.float() / 255 - torch.tensor(target_mean).view(1, 3, 1, 1)
    torch.testing.assert_close(module.as_target(x), expected)


def test_the_paper_protocol_runs_and_scores_the_target_with_its_own_mean(make_cfg):
    cfg = make_cfg([*PAPER, "domain_adaptation=dann_paper"], fast=False)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "train/domain_acc" in metrics
    assert cfg.domain_adaptation.alignment.hidden == [100] and cfg.head.hidden == [100, 100]
    assert metrics["params/total"] == 205_891  # conv 40,880, head 88,010, domain classifier 77,001


def test_adabn_runs_on_a_batchnorm_backbone(make_cfg):
    cfg = make_cfg([*PAPER, "domain_adaptation=adabn", "backbone.batch_norm=true"], fast=False)
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0


def test_adabn_without_batchnorm_is_one_clear_sentence(make_cfg, capsys):
    from conftest import check_refused

    cfg = make_cfg([*PAPER, "domain_adaptation=adabn"], fast=False)
    check_refused(cfg, capsys, "has no BatchNorm layer")
