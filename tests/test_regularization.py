"""L2-SP and EWC: the penalties' values, the Fisher, and their wiring into training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import CONF, check_refused
from transferlab.backbones import create_backbone
from transferlab.errors import ConfigError
from transferlab.heads import create_head
from transferlab.strategies import EWC, L2SP, diagonal_fisher
from transferlab.train import train

STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))


class Parts(torch.nn.Module):
    """What the penalties read from a module: ``.backbone.model`` and ``.head``."""

    def __init__(self):
        super().__init__()
        self.backbone = create_backbone("test_resnet")
        self.head = create_head(self.backbone.num_features, 3)


def shift_backbone(parts: Parts, by: float) -> None:
    with torch.no_grad():
        for p in parts.backbone.model.parameters():
            p.add_(by)


def test_l2sp_is_zero_at_the_pretrained_weights_and_grows_with_distance():
    parts = Parts()
    l2sp = L2SP(parts.backbone.model, parts.head, alpha=0.5, beta=0.0)
    assert l2sp(parts).item() == 0.0
    n = sum(p.numel() for p in parts.backbone.model.parameters())
    values = []
    for step in (0.1, 0.1, 0.1):
        shift_backbone(parts, step)
        values.append(l2sp(parts).item())
    assert values[0] > 0 and values[0] < values[1] < values[2]
    # alpha/2 * n * 0.3^2 after three shifts of 0.1
    assert values[2] == pytest.approx(0.5 / 2 * n * 0.3**2, rel=1e-4)


def test_l2sp_head_term_and_frozen_parameters():
    parts = Parts()
    l2sp = L2SP(parts.backbone.model, parts.head, alpha=1.0, beta=2.0)
    head_sq = sum((p**2).sum() for p in parts.head.parameters()).item()
    assert l2sp(parts).item() == pytest.approx(head_sq, rel=1e-5)  # beta/2 * ||head||^2
    shift_backbone(parts, 1.0)
    for p in parts.backbone.model.parameters():
        p.requires_grad_(False)  # frozen parameters are skipped: they cannot have moved
    assert l2sp(parts).item() == pytest.approx(head_sq, rel=1e-5)


def ewc(parts: Parts, fisher: dict[str, torch.Tensor], tmp_path: Path, strength: float) -> EWC:
    save_file(fisher, tmp_path / "fisher.safetensors")
    return EWC(
        parts.backbone.model, parts.head, strength, fisher=str(tmp_path / "fisher.safetensors")
    )


def test_ewc_with_zero_fisher_is_no_penalty(tmp_path):
    parts = Parts()
    zeros = {n: torch.zeros_like(p) for n, p in parts.backbone.model.named_parameters()}
    penalty = ewc(parts, zeros, tmp_path, strength=1000.0)
    shift_backbone(parts, 0.5)
    assert penalty(parts).item() == 0.0


def test_ewc_weights_each_parameter_by_its_fisher(tmp_path):
    parts = Parts()
    params = dict(parts.backbone.model.named_parameters())
    first = next(iter(params))
    fisher = {n: torch.full_like(p, 3.0 if n == first else 0.0) for n, p in params.items()}
    penalty = ewc(parts, fisher, tmp_path, strength=10.0)
    shift_backbone(parts, 0.2)
    expected = 10.0 / 2 * 3.0 * params[first].numel() * 0.2**2
    assert penalty(parts).item() == pytest.approx(expected, rel=1e-4)


def test_ewc_without_fisher_or_source_names_the_fix(tmp_path):
    parts = Parts()
    with pytest.raises(ConfigError, match="run `make pretrain`.*regularization.source_ckpt"):
        EWC(parts.backbone.model, parts.head, fisher=None)
    with pytest.raises(ConfigError, match="does not exist"):
        EWC(parts.backbone.model, parts.head, fisher=str(tmp_path / "missing.safetensors"))


def test_ewc_fisher_for_another_backbone_is_refused(tmp_path):
    parts = Parts()
    with pytest.raises(ConfigError, match="made for another backbone"):
        ewc(parts, {"other.weight": torch.ones(2)}, tmp_path, strength=1.0)


def test_diagonal_fisher_is_a_mean_of_squared_sample_gradients():
    torch.manual_seed(0)
    parts = Parts()
    model = torch.nn.Sequential(parts.backbone, parts.head)

    class Classifier(torch.nn.Module):  # what diagonal_fisher needs: backbone, device, __call__
        def __init__(self):
            super().__init__()
            self.backbone, self.net = parts.backbone, model
            self.device = torch.device("cpu")

        def forward(self, x):
            return self.net(x.float() / 255)

    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    clf = Classifier()
    fisher = diagonal_fisher(clf, images, labels, num_samples=4)
    name, param = next(iter(parts.backbone.model.named_parameters()))
    expected = torch.zeros_like(param)
    for i in range(4):
        clf.zero_grad()
        torch.nn.functional.cross_entropy(clf(images[i : i + 1]), labels[i : i + 1]).backward()
        expected += param.grad**2 / 4
    torch.testing.assert_close(fisher[name], expected)
    assert all((f >= 0).all() for f in fisher.values())


def test_l2sp_run_logs_its_penalty(make_cfg):
    cfg = make_cfg(
        ["data=synthetic", "trainer.max_epochs=1", "regularization=l2sp", "regularization.alpha=1"]
    )
    metrics = train(cfg)
    assert metrics["train/reg_loss"] > 0  # the weights moved away from their start


def test_ewc_end_to_end_from_an_exported_fisher_and_from_a_checkpoint(make_cfg, tmp_path):
    source = make_cfg(
        ["data=synthetic", "trainer.max_epochs=1", f"export_fisher={tmp_path}/f.safetensors"]
    )
    train(source)
    assert (tmp_path / "f.safetensors").is_file()
    base = ["data=synthetic", "trainer.max_epochs=1", "regularization=ewc"]
    metrics = train(make_cfg([*base, f"regularization.fisher={tmp_path}/f.safetensors"]))
    assert metrics["train/reg_loss"] > 0
    ckpt = Path(source.paths.output_dir, "checkpoints", "last.ckpt")
    estimated = tmp_path / "from_ckpt.safetensors"
    cfg = make_cfg(
        [*base, f"regularization.fisher={estimated}", f"regularization.source_ckpt={ckpt}"]
    )
    assert train(cfg)["train/reg_loss"] > 0
    assert estimated.is_file()  # saved for the next run


def test_ewc_without_a_fisher_exits_with_one_sentence(make_cfg, capsys, tmp_path):
    cfg = make_cfg(
        ["data=synthetic", "regularization=ewc", f"regularization.fisher={tmp_path}/no.st"]
    )
    check_refused(cfg, capsys, "error: EWC needs a source-task Fisher")


@pytest.mark.smoke
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_l2sp_composes_with_every_strategy(make_cfg, strategy):
    cfg = make_cfg(
        [
            "+trainer.fast_dev_run=true",
            "data=synthetic",
            "regularization=l2sp",
            f"strategy={strategy}",
        ]
    )
    metrics = train(cfg)
    assert "train/reg_loss" in metrics
    assert json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text()) == metrics
