"""The training losses are logged as Lightning's per-step ``self.log`` logged them (the same names,
steps and values), without a ``self.log`` call at every step."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from transferlab.loss_log import EpochMeans
from transferlab.train import train

# 100 training images in batches of 32: the last batch of each epoch holds 4
RUN = [
    "data=synthetic",
    "data.num_samples=200",
    "data.size=16",
    "data.image_size=16",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=3",
]


class StepLosses(pl.Callback):
    def __init__(self):
        self.losses: list[float] = []
        self.sizes: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.sizes.append(len(batch[1]))


def weighted_mean(losses: list[float], sizes: list[int]) -> float:
    total = torch.zeros(())
    for loss, size in zip(losses, sizes, strict=True):
        total = total + torch.tensor(loss) * size
    return float(total / sum(sizes))


def test_step_and_epoch_losses_reach_the_loggers_and_the_metrics(make_cfg, monkeypatch):
    seen = StepLosses()
    original = pl.Trainer.__init__

    def with_capture(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), seen], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", with_capture)
    cfg = make_cfg(RUN)
    metrics = train(cfg)
    assert seen.sizes == [32, 32, 32, 4] * 2
    last_epoch = weighted_mean(seen.losses[4:], seen.sizes[4:])
    assert metrics["train/loss_step"] == seen.losses[-1]
    assert metrics["train/loss_epoch"] == metrics["train/loss"] == pytest.approx(last_epoch)
    with Path(cfg.paths.output_dir, "csv", "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    steps = {int(r["step"]): float(r["train/loss_step"]) for r in rows if r["train/loss_step"]}
    assert steps == {s: seen.losses[s] for s in (2, 5)}  # every log_every_n_steps=3 steps
    epochs = [float(r["train/loss_epoch"]) for r in rows if r["train/loss_epoch"]]
    expected = [weighted_mean(seen.losses[i : i + 4], seen.sizes[i : i + 4]) for i in (0, 4)]
    assert epochs == pytest.approx(expected)


def test_epoch_means_weigh_by_batch_size_in_float32():
    means = EpochMeans()
    for value, size in [(1.0, 32), (2.5, 32), (4.0, 4)]:
        means.add("train/loss", torch.tensor(value, dtype=torch.bfloat16))
        means.add("train/other", torch.tensor(value))
        means.end_step(size)
    out = means.compute()
    assert out["train/loss"].dtype == torch.float32
    assert float(out["train/loss"]) == pytest.approx((32 + 80 + 16) / 68)
    assert float(out["train/other"]) == float(out["train/loss"])
    means.reset()
    assert means.compute() == {}
