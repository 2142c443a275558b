"""Frozen means frozen: bit-identical weights, no gradients, untouched BatchNorm statistics."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch

from transferlab.build import build_datamodule, build_module


def fit_a_few_steps(make_cfg, overrides):
    cfg = make_cfg(["data=synthetic", *overrides])
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    before = copy.deepcopy(module.state_dict())
    grads = {}

    class RecordGrads(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            for n, p in pl_module.named_parameters():
                grads[n] = grads.get(n, False) or p.grad is not None

    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        callbacks=[RecordGrads()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    return module, before, grads


def test_feature_extraction_freezes_every_backbone_weight_and_bn_stat(make_cfg):
    module, before, grads = fit_a_few_steps(make_cfg, ["strategy=feature_extraction"])
    after = module.state_dict()
    for key, value in before.items():
        if key.startswith("backbone."):
            assert torch.equal(value, after[key]), f"{key} changed"
    assert not any(g for n, g in grads.items() if n.startswith("backbone."))
    assert any(g for n, g in grads.items() if n.startswith("head."))
    assert not torch.equal(before["head.0.weight"], after["head.0.weight"])


def test_partial_trains_top_groups_only(make_cfg):
    module, before, grads = fit_a_few_steps(
        make_cfg, ["strategy=partial", "strategy.trainable_groups=1"]
    )
    after = module.state_dict()
    top = set(module.backbone.groups[-1].param_names)
    for name, _ in module.backbone.model.named_parameters():
        changed = not torch.equal(before[f"backbone.model.{name}"], after[f"backbone.model.{name}"])
        assert changed == (name in top), name
        assert grads[f"backbone.model.{name}"] == (name in top), name
    # BatchNorm running statistics of the frozen groups stay put under strategy.bn=frozen
    for key in before:
        if "running_mean" in key and not any(
            key.startswith(f"backbone.model.{n.rsplit('.', 1)[0]}") for n in top
        ):
            assert torch.equal(before[key], after[key]), key


def test_bn_train_policy_updates_frozen_statistics(make_cfg):
    module, before, _ = fit_a_few_steps(
        make_cfg, ["strategy=feature_extraction", "strategy.bn=train"]
    )
    after = module.state_dict()
    stats = [k for k in before if k.startswith("backbone.") and k.endswith("running_mean")]
    assert stats and any(not torch.equal(before[k], after[k]) for k in stats)


def test_no_backward_through_the_frozen_prefix(make_cfg):
    """Below the first trainable group nothing needs a gradient, so autograd records no graph
    there: the frozen prefix costs a forward pass only."""
    cfg = make_cfg(["data=synthetic", "strategy=partial", "strategy.trainable_groups=1"])
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization).train()
    model = module.backbone.model
    outputs = {}
    for name in ("layer3", "layer4"):  # last frozen group, the one trainable group
        getattr(model, name).register_forward_hook(
            lambda mod, args, out, name=name: outputs.__setitem__(name, out)
        )
    module(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert not outputs["layer3"].requires_grad and outputs["layer3"].grad_fn is None
    assert outputs["layer4"].requires_grad
