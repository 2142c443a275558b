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


def test_the_table_pairs_seeds_and_adds_a_recipe_column(tmp_path):
    import json

    import yaml
    from benchmarks.parity import table

    def plain(seed, acc):
        (tmp_path / "plain").mkdir(exist_ok=True)
        row = {"arm": "full", "n": 5, "seed": seed, "test/acc": acc}
        (tmp_path / "plain" / f"full_n5_seed{seed}.json").write_text(json.dumps(row))

    def framework(folder, seed, acc):
        job = tmp_path / folder / "full_n5_s0-1" / str(seed)
        (job / ".hydra").mkdir(parents=True)
        overrides = ["strategy=full", "data.n_per_class=5", f"seed={seed}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / "metrics.json").write_text(json.dumps({"test/acc": acc}))

    plain(0, 0.50), plain(1, 0.70)
    framework("framework", 0, 0.60), framework("framework", 1, 0.70)
    framework("framework_lr", 1, 0.90)  # one seed only: paired over that seed
    lines = table(tmp_path, ["lr"]).splitlines()
    assert lines[0].endswith("| transferlab, lr | difference |")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:4] == ["full", "5", "60.0 ± 14.1 (seeds 0,1)", "65.0 ± 7.1 (seeds 0,1)"]
    assert cells[4] == "+5.0 (paired, 2 seeds)"
    assert cells[5:] == ["90.0 ± 0.0 (seeds 1)", "+20.0 (paired, 1 seeds)"]
