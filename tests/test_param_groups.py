"""Param-group math: layer-wise LR decay, differential LR, parameter counts, no-decay split."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from transferlab.backbones import Backbone
from transferlab.errors import ConfigError
from transferlab.heads import create_head
from transferlab.module import TransferModule
from transferlab.optim import build_param_groups
from transferlab.strategies import Strategy, backbone_multipliers, layer_decay_multipliers


def linear_backbone_module(strategy: Strategy, lr: float = 1e-3) -> TransferModule:
    """The worked example: 4 layers of 512x512 linear, head 512 -> 128 -> 2."""
    backbone = Backbone(nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)]), num_features=512)
    head = create_head(512, 2, hidden=[128])
    opt = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=0.01)
    return TransferModule(backbone, head, 2, strategy, opt)


def trainable(module: TransferModule) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_layer_decay_worked_example():
    lrs = [1e-3 * m for m in layer_decay_multipliers(4, 0.1)]
    torch.testing.assert_close(torch.tensor(lrs[::-1]), torch.tensor([1e-3, 1e-4, 1e-5, 1e-6]))


def test_layer_decay_applies_to_groups_with_head_on_top():
    # 3 backbone groups + head = 4 groups: head 1e-3, then 1e-4, 1e-5, 1e-6 going down
    mults = backbone_multipliers(Strategy(layer_decay=0.1), 3) + [1.0]
    torch.testing.assert_close(
        torch.tensor([1e-3 * m for m in mults]), torch.tensor([1e-6, 1e-5, 1e-4, 1e-3])
    )


def test_parameter_count_worked_example():
    fe = linear_backbone_module(Strategy(trainable_groups=0))
    partial = linear_backbone_module(Strategy(trainable_groups=2))
    assert trainable(fe) == 65_922
    assert trainable(partial) == 591_234
    rows = {r["group"]: r for r in partial.parameter_report()}
    assert [r["trainable"] > 0 for r in partial.parameter_report()] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert rows["head"]["lr"] == pytest.approx(1e-3)


def test_one_param_group_per_layer_group_with_multiplied_lr():
    module = linear_backbone_module(Strategy(trainable_groups=2, backbone_lr_mult=0.1))
    opt = module.configure_optimizers()
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {f"{i}{s}" for i in "0123" for s in ("", "/no_decay")} | {
        "head",
        "head/no_decay",
    }
    assert by_name["0"]["lr"] == 0.0 and by_name["0"]["lr_mult"] == 0.0
    assert by_name["3"]["lr"] == pytest.approx(1e-4)
    assert by_name["head"]["lr"] == pytest.approx(1e-3)
    # biases and norm weights take no weight decay
    assert by_name["3/no_decay"]["weight_decay"] == 0.0 and by_name["3"]["weight_decay"] == 0.01
    assert all(p.ndim <= 1 for p in by_name["head/no_decay"]["params"])


def test_build_param_groups_skips_named_no_decay():
    p = nn.Parameter(torch.zeros(2, 2))
    groups = build_param_groups([("g", [("pos_embed", p)])], [1.0], 0.1, 0.05, {"pos_embed"})
    assert groups == [groups[0]] and groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("k", [-1, 5, 9])
def test_partial_k_out_of_range(k):
    with pytest.raises(ConfigError, match="trainable_groups"):
        linear_backbone_module(Strategy(trainable_groups=k))


@pytest.mark.parametrize("gamma", [0.0, -0.5])
def test_non_positive_gamma(gamma):
    with pytest.raises(ConfigError, match=r"layer_decay \(gamma\) must be in \(0, 1\]"):
        Strategy(layer_decay=gamma)


@pytest.mark.parametrize("lr", [0.0, -1e-3])
def test_non_positive_lr(lr):
    with pytest.raises(ConfigError, match="optimizer.lr must be a positive number"):
        linear_backbone_module(Strategy(), lr=lr)


def test_the_parameter_table_shows_the_trainable_share_and_adapter_parameters():
    from transferlab.callbacks import parameter_table, render

    rows = [
        {"group": "stem", "params": 1000, "trainable": 0, "lr": 0.0, "adapter": 0},
        {"group": "layer1", "params": 1100, "trainable": 100, "lr": 1e-4, "adapter": 100},
        {"group": "head", "params": 50, "trainable": 50, "lr": 1e-3, "adapter": 0},
    ]
    text = render(parameter_table(rows))
    header = next(line for line in text.splitlines() if "group" in line)
    assert [c.strip() for c in header.strip("│┃ ").replace("┃", "│").split("│")] == [
        "group",
        "params",
        "adapter",
        "trainable",
        "%",
        "lr",
    ]
    assert "9.1" in text and "150 of 2,150 parameters trainable (7.0%)" in text
    plain = render(parameter_table([{**r, "adapter": 0} for r in rows]))
    assert "adapter" not in plain


@pytest.mark.parametrize("strategy", ["full", "partial"])
def test_an_image_backbone_trains_at_the_head_lr_by_default(make_cfg, strategy):
    """Chosen on validation (experiments/defaults): full and partial leave backbone_lr_mult null,
    which for an image backbone means the head's LR."""
    from transferlab.build import build_module

    cfg = make_cfg([f"strategy={strategy}"])
    assert cfg.strategy.backbone_lr_mult is None
    module = build_module(cfg, 5, 1, [0.5], [0.25])
    trained = [m for m in module.lr_multipliers if m > 0]
    assert trained and all(m == 1.0 for m in trained)


def test_lp_ft_fine_tunes_an_image_backbone_at_the_head_lr_after_the_probe(make_cfg):
    """two_phase (LP-FT) leaves backbone_lr_mult null too: after the probe an image backbone
    trains at the head's LR (on validation 96.0 vs 88.0% at 0.1x, experiments/compare_strategies)."""
    from transferlab.build import build_module

    cfg = make_cfg(["strategy=two_phase"])
    assert cfg.strategy.backbone_lr_mult is None
    module = build_module(cfg, 5, 1, [0.5], [0.25])
    assert module.strategy.backbone_lr_mult == 1.0
    assert all(m == 0.0 for m in module.lr_multipliers[:-1])  # the probe: backbone frozen


def test_feature_extraction_trains_its_head_at_its_own_lr_unless_optimizer_lr_is_set(make_cfg):
    """Chosen on validation (experiments/defaults): a linear probe at 1e-2; the other recipes at
    1e-3; an explicit optimizer.lr wins over both, and SGD keeps its own LR."""
    from transferlab.build import build_module

    module = build_module(make_cfg(["strategy=feature_extraction"]), 5, 1, [0.5], [0.25])
    assert module.base_lr == 1e-2
    assert make_cfg(["strategy=full"]).optimizer.lr == 1e-3
    assert make_cfg(["strategy=feature_extraction", "optimizer.lr=3e-3"]).optimizer.lr == 3e-3
    assert make_cfg(["strategy=feature_extraction", "optimizer=sgd"]).optimizer.lr == 0.01
