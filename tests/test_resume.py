"""A run killed mid-way (mid unfreeze schedule) and resumed from last.ckpt ends where an
uninterrupted run ends; and unfreezing never rebuilds the optimizer or its param groups."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from transferlab.train import train

RUN = [
    "data=synthetic",
    "data.num_samples=128",
    "data.size=16",
    "data.image_size=16",
    "data.batch_size=16",
    "strategy=gradual_unfreeze",
    "scheduler=onecycle",
    "trainer.max_epochs=4",
]


class Killed(RuntimeError):
    pass


class Kill(pl.Callback):
    """Raise in the middle of epoch ``epoch``, like a killed process."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise Killed


def final_state(cfg) -> tuple[dict, dict]:
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("time/wall_s")
    weights = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return metrics, weights


def csv_rows(cfg) -> list[dict]:
    with Path(cfg.paths.output_dir, "csv", "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_resume_from_last_checkpoint_matches_an_uninterrupted_run(make_cfg, tmp_path, monkeypatch):
    kill_epoch = 2
    straight = make_cfg(RUN)
    train(straight)
    expected_metrics, expected_weights = final_state(straight)

    killed = make_cfg(RUN)
    with open_dict(killed):
        killed.paths.output_dir = str(tmp_path / "killed")
    original = pl.Trainer.__init__

    def with_kill(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), Kill(kill_epoch)], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", with_kill)
    with pytest.raises(Killed):
        train(killed)
    monkeypatch.setattr(pl.Trainer, "__init__", original)
    last = Path(killed.paths.output_dir, "checkpoints", "last.ckpt")
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] == kill_epoch - 1  # the last complete epoch before the kill
    unfreezer = next(v for k, v in saved["callbacks"].items() if "Unfreezer" in k)
    assert unfreezer["events"]  # the checkpoint holds the unfreeze schedule mid-way

    resumed = make_cfg([*RUN, f"ckpt_path={last}"])
    with open_dict(resumed):
        resumed.paths.output_dir = killed.paths.output_dir
    train(resumed)
    metrics, weights = final_state(resumed)
    # the LR plot covers the whole schedule, before and after the kill
    final = torch.load(last, weights_only=True)["callbacks"]
    history = next(v for k, v in final.items() if k.startswith("LRHistory"))
    assert history["steps"] == list(range(4 * 4))  # 4 epochs x 4 batches
    assert Path(resumed.paths.output_dir, "lr_per_group.png").stat().st_size > 0
    assert metrics == expected_metrics
    # the CSV history holds every epoch, before and after the kill, as the uninterrupted run's
    assert csv_rows(resumed) == csv_rows(straight)
    assert weights.keys() == expected_weights.keys()
    for k, v in expected_weights.items():
        assert torch.equal(weights[k], v), (k, (weights[k] - v).abs().max())


class OptimizerWatch(pl.Callback):
    """Record the optimizer object and its param-group ids at every epoch start."""

    def __init__(self):
        self.seen: list[tuple[int, list[int], list[int]]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        self.seen.append(
            (id(opt), [id(g) for g in opt.param_groups], [id(scheduler), id(scheduler.optimizer)])
        )


def test_unfreezing_keeps_the_same_optimizer_groups_and_scheduler(make_cfg, monkeypatch):
    watch = OptimizerWatch()
    original = pl.Trainer.__init__

    def with_watch(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), watch], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", with_watch)
    train(make_cfg([*RUN, "logger=none"]))  # also: a run without any logger works
    assert len(watch.seen) == 4  # max_epochs
    assert all(s == watch.seen[0] for s in watch.seen)  # nothing rebuilt as groups open
