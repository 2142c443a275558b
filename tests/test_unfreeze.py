"""Gradual unfreezing and two-phase: order, timing, LR per group, and bad schedules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl

from conftest import check_refused
from transferlab.build import build_datamodule, build_module
from transferlab.strategies import Unfreezer, UnfreezeSchedule


def test_events_by_epoch():
    assert [UnfreezeSchedule(every=1).events_by(e) for e in range(4)] == [0, 1, 2, 3]
    assert [UnfreezeSchedule(every=2).events_by(e) for e in range(5)] == [0, 0, 1, 1, 2]
    assert [UnfreezeSchedule(milestones=[1, 3]).events_by(e) for e in range(5)] == [0, 1, 1, 2, 2]
    assert UnfreezeSchedule(every=1).groups_after(9, 5) == 5
    assert UnfreezeSchedule(milestones=[2], groups_per_step="all").groups_after(1, 5) == 5


class RecordMasks(pl.Callback):
    """Trainable flags per group and LR of each group, at the first step of every epoch."""

    def __init__(self):
        self.masks, self.lrs = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        opt = trainer.optimizers[0]
        lrs = {g["name"]: g["lr"] for g in opt.param_groups}
        if batch_idx == 0:
            self.masks.append(
                [
                    any(p.requires_grad for _, p in ps)
                    for _, ps in pl_module.named_group_parameters()
                ][:-1]
            )
        self.lrs.append(lrs)


def fit(make_cfg, overrides, epochs=4):
    cfg = make_cfg(
        ["data=synthetic", "data.batch_size=32", f"trainer.max_epochs={epochs}", *overrides]
    )
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    rec = RecordMasks()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[rec, Unfreezer(module.strategy.unfreeze)],
    )
    trainer.fit(module, datamodule=dm)
    return rec, module


def test_gradual_unfreezes_one_group_per_epoch_top_down(make_cfg):
    rec, _ = fit(make_cfg, ["strategy=gradual_unfreeze"])
    # 5 groups (stem, layer1..4): epoch e trains the top e groups
    assert rec.masks == [
        [False] * 5,
        [False, False, False, False, True],
        [False, False, False, True, True],
        [False, False, True, True, True],
    ]


def test_milestones_and_discriminative_lrs(make_cfg):
    rec, module = fit(
        make_cfg,
        [
            "strategy=gradual_unfreeze",
            "strategy.unfreeze.every=null",
            "strategy.unfreeze.milestones=[2]",
            "scheduler=constant",
        ],
    )
    assert rec.masks[1] == [False] * 5 and rec.masks[2] == [False] * 4 + [True]
    last = rec.lrs[-1]
    # top group at lr/2.6, the head at lr; frozen groups at 0
    assert last["head"] == pytest.approx(1e-3)
    assert last["layer4"] == pytest.approx(1e-3 * 0.385)
    assert last["layer3"] == 0.0


def test_two_phase_unfreezes_everything_with_a_fresh_warmup(make_cfg):
    rec, _ = fit(
        make_cfg,
        [
            "strategy=two_phase",
            "strategy.backbone_lr_mult=0.1",
            "strategy.unfreeze.milestones=[2]",
            "strategy.unfreeze.rewarm=4",
            "scheduler=constant",
        ],
    )
    assert rec.masks[1] == [False] * 5 and rec.masks[2] == [True] * 5
    steps_per_epoch = len(rec.lrs) // 4
    after = [lr["layer1"] for lr in rec.lrs[2 * steps_per_epoch :]]
    assert all(lr["layer1"] == 0.0 for lr in rec.lrs[: 2 * steps_per_epoch])
    # warm-up ramps from a quarter to the full backbone LR (0.1 x 1e-3) over 4 steps
    assert after[:4] == pytest.approx([1e-4 * k / 4 for k in range(1, 5)])
    assert after[4] == pytest.approx(1e-4)


def plateau_module_and_unfreezer(make_cfg, *overrides: str):
    """A module under plateau unfreezing on val/loss, and its Unfreezer callback."""
    cfg = make_cfg(
        [
            "data=synthetic",
            "strategy=gradual_unfreeze",
            "strategy.unfreeze.every=null",
            "strategy.unfreeze.monitor=val/loss",
            *overrides,
        ]
    )
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    return module, Unfreezer(module.strategy.unfreeze)


def test_plateau_unfreezes_after_patience(make_cfg):
    module, cb = plateau_module_and_unfreezer(make_cfg, "strategy.unfreeze.patience=2")
    cb.start = 0
    for loss, expected in [
        (1.0, 0),
        (0.9, 0),
        (0.95, 0),
        (0.91, 1),
        (0.95, 1),
        (0.96, 1),
        (0.97, 2),
    ]:
        trainer = SimpleNamespace(
            sanity_checking=False,
            callback_metrics={"val/loss": loss},
            current_epoch=0,
            is_global_zero=True,
            loggers=[],
            global_step=0,
            lr_scheduler_configs=[],
        )
        cb.on_validation_end(trainer, module)
        assert cb.events == expected, loss
    assert [m > 0 for m in module.lr_multipliers] == [False, False, False, True, True, True]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [
                "strategy=gradual_unfreeze",
                "strategy.unfreeze.every=null",
                "strategy.unfreeze.milestones=[1,2,3,4,5,6]",
            ],
            "asks for 6 layer groups but the backbone has only 5",
        ),
        (
            [
                "strategy=gradual_unfreeze",
                "strategy.unfreeze.every=null",
                "strategy.unfreeze.monitor=val/loss",
                "+trainer.limit_val_batches=0",
            ],
            "no validation set",
        ),
        (["strategy=gradual_unfreeze", "strategy.unfreeze.milestones=[1]"], "exactly one of every"),
        (["scheduler=onecycle", "trainer.max_epochs=-1"], "trainer.max_epochs=-1 never ends"),
    ],
)
def test_bad_schedules(make_cfg, capsys, overrides, message):
    cfg = make_cfg(["data=synthetic", *overrides])
    check_refused(cfg, capsys, message)


def test_plateau_min_delta_is_relative():
    from transferlab.errors import ConfigError

    loose = UnfreezeSchedule(monitor="val/loss", min_delta=0.02)
    assert loose.improves(0.97, 1.0) and not loose.improves(0.99, 1.0)  # 3% yes, 1% no
    assert UnfreezeSchedule(monitor="val/loss").improves(0.999, 1.0)  # 0: any change counts
    acc = UnfreezeSchedule(monitor="val/acc", mode="max", min_delta=0.05)
    assert acc.improves(0.85, 0.8) and not acc.improves(0.83, 0.8)
    with pytest.raises(ConfigError, match="min_delta must be in"):
        UnfreezeSchedule(monitor="val/loss", min_delta=1.5)


def test_plateau_ignores_validation_after_fitting(make_cfg):
    module, cb = plateau_module_and_unfreezer(make_cfg)
    for fn, loss in (("fit", 1.0), ("validate", 2.0), ("validate", 3.0)):
        trainer = SimpleNamespace(
            sanity_checking=False, state=SimpleNamespace(fn=fn), callback_metrics={"val/loss": loss}
        )
        cb.on_validation_end(trainer, module)
    assert cb.events == 0 and cb.best == 1.0  # trainer.validate() runs did not count
