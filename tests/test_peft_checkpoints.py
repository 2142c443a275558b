"""A LoRA run's checkpoint rebuilds the adapted model exactly (adapter weights, head, BatchNorm
running statistics), transferlab-eval scores it, a killed run resumes to the same end, and
merging the updates gives a plain timm model with the same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
from omegaconf import open_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from test_resume import Kill, Killed, final_state
from transferlab.build import build_module
from transferlab.build.checkpoint import load_module
from transferlab.evaluate import evaluate
from transferlab.train import train

HELPERS = Path(__file__).parent / "helpers"
RUN = [
    "data=synthetic",
    "data.num_samples=128",
    "data.size=16",
    "data.image_size=16",
    "data.batch_size=16",
    "strategy=lora",
    "trainer.max_epochs=3",
    "logger=none",
]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    """test_resnet weights as a pretrained backbone has them. timm zero-initialises each block's
    last BatchNorm scale, which blocks every gradient to frozen-BN LoRA updates inside the
    blocks of a randomly initialised ResNet (never of a trained one)."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    model = timm.create_model("test_resnet", num_classes=0, zero_init_last=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def merged_matches_plain_timm(module, timm_name: str, x: torch.Tensor) -> float:
    """Merge the module's LoRA updates; check the result is a plain timm model; return the
    largest output difference against the adapted model."""
    module.eval()
    with torch.no_grad():
        adapted = module(x)
        module.backbone.merge_adapters()
        merged = module(x)
    net = module.backbone.model
    assert not any(isinstance(m, BaseTunerLayer) for m in net.modules())
    plain = timm.create_model(timm_name, num_classes=0, in_chans=x.shape[1])
    plain.load_state_dict(net.state_dict())  # strict: the very keys and shapes of timm's model
    names = [n for g in module.backbone.groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in plain.named_parameters())
    return float((adapted - merged).abs().max())


def test_a_lora_checkpoint_rebuilds_evaluates_and_merges(make_cfg, tiny_weights):
    cfg = make_cfg(["backbone=tiny", f"backbone.weights={tiny_weights}", *RUN])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    last = out / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)["state_dict"]
    assert any(".lora_B." in k and state[k].abs().max() > 0 for k in state)  # updates trained
    start = build_module(cfg, 4, 3, [0.5] * 3, [0.5] * 3, for_training=False).state_dict()
    stats = [k for k in state if k.endswith("running_mean")]
    assert stats and any(not torch.equal(state[k], start[k]) for k in stats)  # BN stats moved

    module, _ = load_module(str(last))
    for k, v in module.state_dict().items():
        assert torch.equal(v, state[k]), k
    evaluated = evaluate(
        make_cfg(
            [f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", "trainer.accelerator=cpu"],
            config_name="eval",
        )
    )
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])
    x = torch.rand(4, 3, 16, 16)
    assert merged_matches_plain_timm(module, "test_resnet", x) < 1e-5


def test_merging_trained_vit_updates_keeps_the_outputs(make_cfg):
    cfg = make_cfg(["backbone=timm", "backbone.name=test_vit", "strategy=lora", "data=synthetic"])
    module = build_module(cfg, 3, 3, [0.5] * 3, [0.5] * 3)
    torch.manual_seed(0)
    with torch.no_grad():  # as if trained: B != 0, so the merge has something to fold in
        for name, p in module.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.1)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        base = build_module(cfg, 3, 3, [0.5] * 3, [0.5] * 3)
        assert not torch.allclose(module.eval()(x), base.eval()(x), atol=1e-3)
    assert merged_matches_plain_timm(module, "test_vit", x) < 1e-5


def test_a_killed_lora_run_resumes_to_the_same_end(make_cfg, tmp_path, monkeypatch, tiny_weights):
    tiny = ["backbone=tiny", f"backbone.weights={tiny_weights}"]
    straight = make_cfg([*tiny, *RUN])
    train(straight)
    expected_metrics, expected_weights = final_state(straight)

    killed = make_cfg([*tiny, *RUN])
    with open_dict(killed):
        killed.paths.output_dir = str(tmp_path / "killed")
    original = pl.Trainer.__init__

    def with_kill(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), Kill(2)], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", with_kill)
    with pytest.raises(Killed):
        train(killed)
    monkeypatch.setattr(pl.Trainer, "__init__", original)
    last = Path(killed.paths.output_dir, "checkpoints", "last.ckpt")
    resumed = make_cfg([*tiny, *RUN, f"ckpt_path={last}"])
    with open_dict(resumed):
        resumed.paths.output_dir = killed.paths.output_dir
    train(resumed)
    metrics, weights = final_state(resumed)
    assert metrics == expected_metrics
    assert weights.keys() == expected_weights.keys()
    for k, v in expected_weights.items():
        assert torch.equal(weights[k], v), k


@pytest.mark.slow
def test_lora_under_two_process_ddp_trains_the_same_updates_on_both_ranks(tmp_path, tiny_weights):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "transferlab.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "backbone=tiny",
        f"backbone.weights={tiny_weights}",
        *RUN[:5],
        "strategy=lora",
        "logger=none",
        "print_config=false",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run}",
        "+callbacks.probe._target_=peft_probe.LoraProbe",
        f"+callbacks.probe.out={run}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{HELPERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unused parameters" not in done.stderr
    ranks = [json.loads((run / f"lora_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    trained = ranks[0]["trained"]
    assert trained and all(".lora_" in n for n in trained)
    assert ranks[1]["trained"] == trained  # gradients were all-reduced: the ranks agree
    assert any(v != 0 for n, vs in trained.items() if ".lora_B." in n for v in vs)  # B moved
    assert json.loads((run / "metrics.json").read_text())["test/acc"] >= 0
