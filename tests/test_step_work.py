"""The framework's per-step work, made cheaper, keeps its behaviour: the training losses are logged
as Lightning's per-step ``self.log`` logged them (the same names, steps and values); the
divergence guard names the first bad step; the LR history has the same points; the module's
attribute fast path still registers parameters, modules and buffers."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from transferlab.callbacks import DivergenceGuard, LRHistory
from transferlab.errors import ConfigError
from transferlab.loss_log import EpochMeans
from transferlab.optim import MultiplierLR, build_param_groups
from transferlab.schedules import Cosine
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


def guard_steps(guard: DivergenceGuard, losses: list[float]) -> None:
    for step, loss in enumerate(losses, start=1):
        trainer = SimpleNamespace(global_step=step)
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, step - 1)


def checked(guard: DivergenceGuard) -> str:
    module = torch.nn.Linear(2, 2)
    module.base_lr = 0.1
    with pytest.raises(ConfigError) as error:
        guard.check(SimpleNamespace(global_step=99, precision="32-true"), module)
    return str(error.value)


def test_divergence_guard_names_the_first_bad_step_and_value():
    guard = DivergenceGuard()
    guard_steps(guard, [1.0, 0.9])
    guard.check(SimpleNamespace(global_step=2), torch.nn.Linear(2, 2))  # finite: no error
    guard_steps(guard, [0.8, float("inf"), float("nan")])
    assert "the loss became infinite at step 2" in checked(guard)
    late = DivergenceGuard()
    late.FOLD_EVERY = 4  # losses are checked in groups of 4 between the epoch-level checks
    guard_steps(late, [1.0] * 6 + [float("nan")] + [float("inf")] * 5)
    assert late.first_bad is not None and len(late.losses) == 0
    assert "the loss became NaN at step 7" in checked(late)


def reference_history(optimizer, scheduler, steps: int) -> dict[str, list[float]]:
    """LRs recorded by reading every param group at every step (the first of each name)."""
    lrs: dict[str, list[float]] = {}
    for step in range(steps):
        for group in optimizer.param_groups:
            history = lrs.setdefault(group["group"], [])
            if len(history) < step + 1:
                history.append(group["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def lr_parts():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    named = [
        ("low", list(model[0].named_parameters())),
        ("head", list(model[1].named_parameters())),
    ]
    optimizer = torch.optim.SGD(build_param_groups(named, [0.1, 1.0], 0.5, 1e-4), lr=0.5)
    return optimizer, MultiplierLR(optimizer, Cosine(warmup=2), 10)


def test_lr_history_records_each_groups_lr_at_every_step(tmp_path):
    expected = reference_history(*lr_parts(), steps=10)
    optimizer, scheduler = lr_parts()
    history = LRHistory(str(tmp_path / "lr.png"))
    trainer = SimpleNamespace(optimizers=[optimizer], global_step=0)
    for step in range(10):
        if step == 6:  # a resumed run: the saved history, then more steps
            saved = history.state_dict()
            history = LRHistory(str(tmp_path / "lr.png"))
            history.load_state_dict(saved)
        trainer.global_step = step
        history.on_train_batch_start(trainer, None, None, step)
        optimizer.step()
        scheduler.step()
    assert history.steps == list(range(10))
    assert history.lrs == expected and list(history.lrs) == ["low", "head"]


def test_module_attributes_still_register_parameters_modules_and_buffers(make_cfg):
    from transferlab.build import build_datamodule, build_module

    cfg = make_cfg(["data=synthetic"])
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    module._current_fx_name = "training_step"  # Lightning's hook name: a plain attribute
    module.extra_weight = torch.nn.Parameter(torch.ones(2))
    module.extra_layer = torch.nn.Linear(2, 2)
    module.register_buffer("extra_buffer", torch.zeros(1))
    module.extra_buffer = torch.ones(1)
    names = dict(module.named_parameters())
    assert module._current_fx_name == "training_step" and "_current_fx_name" not in names
    assert "extra_weight" in names and "extra_layer.weight" in names
    assert torch.equal(dict(module.named_buffers())["extra_buffer"], torch.ones(1))


class CountsSteps(pl.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1


class CountsThroughSuper(CountsSteps):
    def on_train_batch_end(self, *args):
        super().on_train_batch_end(*args)
        self.steps += 10


class TinyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_passes_over_callbacks_inherited_batch_hooks_and_calls_their_own():
    from pytorch_lightning.profilers import SimpleProfiler

    from transferlab.callbacks import skip_inherited_batch_hooks

    counts, through_super, module = CountsSteps(), CountsThroughSuper(), TinyModule()
    profiler = SimpleProfiler()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[counts, through_super],
        profiler=profiler,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    skip_inherited_batch_hooks(trainer.callbacks)
    assert counts.on_before_backward is None and callable(counts.on_train_batch_end)
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    assert counts.steps == 4 and through_super.steps == 44
    called = set(profiler.recorded_durations)
    assert "[Callback]CountsSteps.on_train_batch_end" in called
    assert not any(n.startswith("[Callback]") and "before_backward" in n for n in called)
