"""The pieces of the parity benchmark's plain loop (benchmarks/parity.py): which layers each arm
trains, frozen BatchNorm statistics that stay put, and the framework's split reused exactly."""

from __future__ import annotations

import torch
from benchmarks.parity import plain_model, task_splits


def trainable_children(model) -> set[str]:
    return {
        name
        for name, child in model.model.named_children()
        if any(p.requires_grad for p in child.parameters())
    }


def test_each_arm_trains_the_layers_it_names():
    assert trainable_children(plain_model("feature_extraction", "test_resnet", None)) == {"fc"}
    assert trainable_children(plain_model("partial", "test_resnet", None)) == {
        "layer3",
        "layer4",
        "fc",
    }
    full = plain_model("full", "test_resnet", None)
    assert all(p.requires_grad for p in full.parameters())


def test_frozen_layers_keep_their_batchnorm_statistics_in_training():
    model = plain_model("partial", "test_resnet", None).train()
    stem_bn, top_bn = model.model.bn1, model.model.layer4[0].bn1
    before = stem_bn.running_mean.clone()
    model(torch.randn(8, 1, 32, 32))
    assert not stem_bn.training and top_bn.training
    assert torch.equal(stem_bn.running_mean, before)


def test_the_plain_loop_gets_the_framework_split():
    first, again = task_splits(5, 0), task_splits(5, 0)
    x, y = first["train"]
    assert x.shape == (25, 1, 32, 32) and torch.bincount(y).tolist() == [5] * 5
    assert torch.equal(x, again["train"][0]) and len(first["val"][1]) == 250
