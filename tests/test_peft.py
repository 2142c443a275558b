"""Parameter-efficient strategies: LoRA (peft), BitFit and adapters sit in the layer groups of
their blocks, train alone (base weights frozen), compose with layer decay and unfreezing, keep
the feature cache off, and refuse an unknown target in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from conftest import check_refused
from transferlab.backbones import LayerGroup
from transferlab.build import build_module
from transferlab.build.experiment import build_experiment
from transferlab.optim import build_param_groups
from transferlab.strategies.peft import (
    bitfit_names,
    matches,
    place_parameters,
    resolve_targets,
)
from transferlab.train import train

BACKBONES = {
    "resnet": ["backbone=tiny"],
    "vit": ["backbone=timm", "backbone.name=test_vit"],
    "convnext": ["backbone=timm", "backbone.name=test_convnext"],
    "efficientnet": ["backbone=timm", "backbone.name=test_efficientnet"],
}


def module_for(make_cfg, overrides):
    cfg = make_cfg(["data=synthetic", *overrides])
    return build_module(cfg, 3, 3, [0.5] * 3, [0.5] * 3)


def trainable(module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_adapter_parameters_go_to_the_group_of_their_block():
    groups = [
        LayerGroup("stem", ("conv1.weight", "bn1.weight")),
        LayerGroup("layer1", ("layer1.0.conv1.weight", "layer1.0.bn1.weight")),
    ]
    names = [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.base_layer.weight",
        "layer1.0.conv1.lora_A.default.weight",
        "layer1.0.bn1.weight",
        "layer1.0.adapter.down.weight",
    ]
    placed = place_parameters(groups, names)
    assert [g.name for g in placed] == ["stem", "layer1"]
    assert placed[0].param_names == ("conv1.weight", "bn1.weight")
    assert placed[1].param_names == tuple(names[2:])
    # merging maps the renamed base weight back to its plain name, in the same group
    merged = place_parameters(placed, ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight"])
    assert merged[1].param_names == ("layer1.0.conv1.weight",)
    with pytest.raises(ValueError, match="no single layer group"):
        place_parameters(groups, ["fc.weight"])


def test_target_patterns_match_name_endings_component_by_component():
    assert matches("blocks.3.attn.qkv", "attn.qkv")
    assert matches("layer1.0.conv2", "layer*.*.conv*")
    assert not matches("conv1", "layer*.*.conv*")  # the stem conv is no block conv
    assert not matches("layer1.0.downsample.0", "layer*.*.conv*")
    names = ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.1.attn.qkv"]
    assert resolve_targets(names, ["attn.qkv"], "layer") == [
        "blocks.0.attn.qkv",
        "blocks.1.attn.qkv",
    ]


def test_bitfit_trains_biases_and_optionally_norm_scales():
    names = ["conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    assert bitfit_names(names, {"bn"}, norms=False) == {"bn.bias", "fc.bias"}
    assert bitfit_names(names, {"bn"}, norms=True) == {"bn.bias", "bn.weight", "fc.bias"}


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_lora_trains_only_its_updates_and_the_head_on_every_architecture(make_cfg, arch):
    module = module_for(make_cfg, [*BACKBONES[arch], "strategy=lora"])
    added = {"backbone.model." + n for n in module.backbone.added}
    assert added and all(".lora_" in n for n in added)
    head = {"head." + n for n, _ in module.head.named_parameters()}
    assert trainable(module) == added | head
    rows = module.parameter_report()
    assert sum(r["adapter"] for r in rows) == sum(
        p.numel() for n, p in module.named_parameters() if n in added
    )
    assert rows[0]["adapter"] == 0  # the stem holds no block layers
    assert all(0 < r["trainable_pct"] < 100 for r in rows[1:-1] if r["adapter"])
    assert rows[-1]["trainable_pct"] == 100.0  # the head always trains
    # every LoRA update is in the group of the layer it adapts
    for group, params in module.named_group_parameters()[:-1]:
        for name, _ in params:
            if ".lora_" in name:
                base = name.split(".lora_")[0] + ".base_layer.weight"
                assert base in dict(params), (group, name)


def test_bitfit_and_adapters_train_only_their_parameters(make_cfg):
    bitfit = module_for(make_cfg, [*BACKBONES["vit"], "strategy=bitfit"])
    backbone_trains = {n for n in trainable(bitfit) if n.startswith("backbone.")}
    assert backbone_trains and all(n.endswith(".bias") for n in backbone_trains)
    adapters = module_for(make_cfg, [*BACKBONES["vit"], "strategy=adapters"])
    backbone_trains = {n for n in trainable(adapters) if n.startswith("backbone.")}
    assert len(backbone_trains) == 6 * 4  # down and up (weight, bias) in each of 6 blocks
    assert all(".mlp.adapter." in n for n in backbone_trains)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # zero-initialised up-projections: the adapted model starts as the base
        plain = module_for(make_cfg, [*BACKBONES["vit"], "strategy=full"])
        plain.load_state_dict(
            {k.replace(".base_layer", ""): v for k, v in adapters.state_dict().items()},
            strict=False,
        )
        assert torch.allclose(adapters.eval()(x), plain.eval()(x), atol=1e-6)


def test_lora_composes_with_layer_decay_and_gradual_unfreezing(make_cfg):
    module = module_for(
        make_cfg,
        [
            *BACKBONES["resnet"],
            "strategy=lora",
            "strategy.layer_decay=0.5",
            "strategy.backbone_lr_mult=0.1",
            "strategy.trainable_groups=0",
        ],
    )
    assert trainable(module) == {"head." + n for n, _ in module.head.named_parameters()}
    assert module.feature_cache_blockers() == []  # only the head trains: cacheable
    opened = module.set_trainable_top(2)
    assert opened == ["layer3", "layer4"]
    lora = {n for n in trainable(module) if n.startswith("backbone.")}
    assert lora and all(".lora_" in n and n.split(".")[2] in opened for n in lora)
    assert module.feature_cache_blockers()[0].startswith("the backbone trains")
    built = build_param_groups(module.named_group_parameters(), module.lr_multipliers, 1e-3, 0.0)
    groups = {g["name"]: g for g in built}
    lr = 1e-3
    assert groups["layer4"]["lr"] == pytest.approx(lr * 0.1 * 0.5)
    assert groups["layer3"]["lr"] == pytest.approx(lr * 0.1 * 0.25)
    assert groups["layer1"]["lr"] == 0.0
    layer4 = {id(p) for p in groups["layer4"]["params"]}
    assert any(id(p) in layer4 for n, p in module.named_parameters() if n in lora)


def test_bn_policy_keeps_frozen_groups_statistics_under_lora(make_cfg):
    module = module_for(make_cfg, [*BACKBONES["resnet"], "strategy=lora"])
    module.set_trainable_top(1)
    module.train()
    frozen = {id(bn) for bn in module.frozen_batchnorms()}
    modes = {
        n.split(".")[0]: m.training
        for n, m in module.backbone.model.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d) and n.startswith(("layer1", "layer4"))
    }
    assert frozen and modes == {"layer1": False, "layer4": True}


def test_an_unknown_lora_target_names_the_close_module_names(make_cfg, capsys):
    targets = "strategy.peft.target_modules=[attn.qkvv]"
    cfg = make_cfg([*BACKBONES["vit"], "data=synthetic", "strategy=lora", targets])
    check_refused(
        cfg,
        capsys,
        "'attn.qkvv' matches no Linear or ungrouped Conv2d layer of this backbone; "
        "its names closest to it are attn.qkv",
    )


def test_lora_on_random_weights_is_refused(make_cfg, capsys):
    cfg = make_cfg(
        [*BACKBONES["resnet"], "data=synthetic", "strategy=lora", "strategy.reinit=true"]
    )
    check_refused(cfg, capsys, "set strategy.reinit=false")


def test_gradual_unfreezing_opens_lora_updates_group_by_group_from_the_top(make_cfg):
    cfg = make_cfg(
        [
            *BACKBONES["vit"],
            "data=synthetic",
            "data.num_samples=64",
            "data.size=16",
            "data.image_size=16",
            "data.batch_size=16",
            "strategy=lora",
            "strategy.trainable_groups=0",
            "strategy.unfreeze={_target_:transferlab.strategies.UnfreezeSchedule,every:1}",
            "trainer.max_epochs=4",
            "logger=none",
        ]
    )
    train(cfg)
    state = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)[
        "state_dict"
    ]
    start = build_experiment(cfg).module.state_dict()  # seeded and built as train() does
    moved = {k.split(".")[3] for k in state if ".lora_B." in k and state[k].abs().max() > 0}
    # epoch 0 trains the head alone; epochs 1, 2, 3 open blocks 5, 4, 3; blocks 0-2 never train
    assert moved == {"5", "4", "3"}
    base = [k for k in state if ".base_layer." in k]
    assert base and all(torch.equal(state[k], start[k]) for k in base)


def test_a_small_vit_is_built_from_model_args_and_a_typo_is_refused():
    from transferlab.backbones import create_backbone
    from transferlab.errors import ConfigError

    vit = create_backbone("test_vit", model_args={"img_size": 32, "patch_size": 8})
    assert vit(torch.rand(1, 3, 32, 32)).shape == (1, vit.num_features)
    assert tuple(vit.model.patch_embed.patch_size) == (8, 8)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'patch_sise'"):
        create_backbone("test_vit", model_args={"patch_sise": 8})


def test_mlp_targets_outside_the_default_vit_targets_are_refused():
    from transferlab.backbones import create_backbone
    from transferlab.errors import ConfigError
    from transferlab.strategies.peft import LoRA, inject_lora

    with pytest.raises(ConfigError, match="strategy.peft.mlp=true adds the MLP layers"):
        inject_lora(create_backbone("test_resnet").model, LoRA(mlp=True))


def test_an_exported_lora_backbone_is_plain_timm_weights(make_cfg, capsys, tmp_path):
    from transferlab.backbones import create_backbone
    from transferlab.train import train

    exported = tmp_path / "merged.safetensors"
    cfg = make_cfg(
        [
            "data=synthetic",
            "data.num_samples=64",
            "strategy=lora",
            "trainer.max_epochs=1",
            f"export_backbone={exported}",
        ]
    )
    train(cfg)
    plain = create_backbone("test_resnet", weights=str(exported))  # loads with every key checked
    assert not any("lora_" in n for n, _ in plain.model.named_parameters())
    ckpt = Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")
    again = make_cfg(["data=synthetic", f"backbone.weights={ckpt}"])
    with open_dict(again):
        again.paths.output_dir = str(tmp_path / "refused")
    check_refused(again, capsys, "holds a backbone with PEFT layers (LoRA or adapters)")
