"""Validation and test metrics are computed once per epoch from per-step updates: the values in
metrics.json equal the same metrics computed directly over the loaders, checkpoint selection
and early stopping still see ``val/acc``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_calibration_error,
    multiclass_f1_score,
)

from transferlab.build import build_datamodule, load_module
from transferlab.train import train

LIMITS = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2"]


def logits_of(module, loader, batches: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the first ``batches`` batches of ``loader`` (all when None)."""
    module.eval()
    out, labels = [], []
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            if batches is not None and i == batches:
                break
            out.append(module(x))
            labels.append(y)
    return torch.cat(out), torch.cat(labels)


def direct_metrics(logits: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
    """The logged metrics, computed in one go over every sample (no per-step state)."""
    k = logits.shape[1]
    probs = logits.softmax(-1)
    return {
        f"{prefix}acc": (logits.argmax(-1) == y).float().mean().item(),
        f"{prefix}loss": F.cross_entropy(logits, y).item(),
        f"{prefix}f1": multiclass_f1_score(probs, y, k, average="macro").item(),
        f"{prefix}auroc": multiclass_auroc(probs, y, k).item(),
        f"{prefix}ece": multiclass_calibration_error(probs, y, k, n_bins=15, norm="l1").item(),
    }


def check_equal(metrics: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-5), key


def test_metrics_json_equals_metrics_computed_directly(make_cfg):
    cfg = make_cfg(["data=synthetic", "trainer.max_epochs=2", "logger=none"])
    metrics = train(cfg)
    assert metrics == json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    module, _ = load_module(str(Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")))
    dm = build_datamodule(cfg, train_augmentation=False)
    dm.setup()
    check_equal(metrics, direct_metrics(*logits_of(module, dm.val_dataloader()), "val/"))
    check_equal(metrics, direct_metrics(*logits_of(module, dm.test_dataloader()), "test/"))


def test_domain_adaptation_metrics_keep_their_names_and_values(make_cfg):
    cfg = make_cfg(
        [
            "data=mnist_to_digits",
            "domain_adaptation=coral",
            "trainer.max_epochs=1",
            *LIMITS,
            "+trainer.limit_test_batches=2",
            "logger=none",
        ]
    )
    metrics = train(cfg)
    module, _ = load_module(str(Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")))
    dm = build_datamodule(cfg, train_augmentation=False)
    dm.setup()
    val_source, val_target = dm.val_dataloader()
    test_target, test_source = dm.test_dataloader()
    for loader, prefix in [
        (val_source, "val/"),
        (val_target, "val_target/"),
        (test_target, "test/"),
        (test_source, "test_source/"),
    ]:
        check_equal(metrics, direct_metrics(*logits_of(module, loader, batches=2), prefix))
    assert not [k for k in metrics if "dataloader_idx" in k]


def val_acc_per_epoch(run_dir: str) -> list[float]:
    (csv,) = Path(run_dir).rglob("metrics.csv")
    header, *rows = [line.split(",") for line in csv.read_text().splitlines()]
    col = header.index("val/acc")
    return [float(r[col]) for r in rows if r[col]]


def test_best_checkpoint_is_the_epoch_with_the_best_val_acc(make_cfg):
    # a high LR and the lagging BatchNorm averages (no precise BN): val/acc changes from epoch
    # to epoch, so "best" picks one of them
    overrides = [
        "optimizer.lr=3e-2",
        "strategy.precise_bn=false",
        "+trainer.limit_val_batches=2",
    ]
    cfg = make_cfg(["data=synthetic", "trainer.max_epochs=4", "logger=csv", *overrides])
    metrics = train(cfg)
    *accs, final = val_acc_per_epoch(cfg.paths.output_dir)
    assert len(accs) == 4 and len(set(accs)) > 1  # one val/acc per epoch, then the final one
    assert final == max(accs)  # the final validation scores the best checkpoint
    ckpt = torch.load(
        Path(cfg.paths.output_dir, "checkpoints", "best.ckpt"),
        map_location="cpu",
        weights_only=False,
    )
    (best,) = [s for k, s in ckpt["callbacks"].items() if "'monitor': 'val/acc'" in k]
    assert float(best["best_model_score"]) == pytest.approx(max(accs))
    assert accs[ckpt["epoch"]] == max(accs)
    # metrics.json says how many steps ran and at which one the scored weights were saved
    steps_per_epoch = metrics["steps/run"] / 4
    assert steps_per_epoch == int(steps_per_epoch) > 0
    assert metrics["steps/best"] == ckpt["global_step"] == (ckpt["epoch"] + 1) * steps_per_epoch


def test_early_stopping_sees_val_acc_at_the_end_of_each_validation(make_cfg):
    stop = "+callbacks.early_stop"
    cfg = make_cfg(
        [
            "data=synthetic",
            "trainer.max_epochs=5",
            "logger=csv",
            *LIMITS,
            f"{stop}._target_=pytorch_lightning.callbacks.EarlyStopping",
            f"{stop}.monitor=val/acc",
            f"{stop}.mode=max",
            f"{stop}.stopping_threshold=0.0",  # val/acc >= 0 always: stop after the first epoch
        ]
    )
    train(cfg)  # EarlyStopping raises if val/acc is missing when it checks
    assert len(val_acc_per_epoch(cfg.paths.output_dir)) == 2  # epoch 0, then the final one
