"""Unfreezing over time: ULMFiT-style gradual unfreezing and the two-phase recipe.

The schedule is plain data (:class:`~transferlab.strategies.schedule.UnfreezeSchedule`);
:class:`Unfreezer` is the thin callback
that applies it. Unfreezing changes group multipliers and ``requires_grad`` only: the optimizer
keeps its param groups, so schedulers, checkpoint resume and DDP are unaffected.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from transferlab.errors import ConfigError
from transferlab.strategies.core import trainable_mask
from transferlab.strategies.schedule import UnfreezeSchedule

log = logging.getLogger("transferlab")


class Unfreezer(pl.Callback):
    """Applies an :class:`UnfreezeSchedule` to a :class:`~transferlab.module.TransferModule`."""

    def __init__(self, schedule: UnfreezeSchedule):
        self.schedule = schedule
        self.events = 0
        self.best: float | None = None
        self.wait = 0
        self.start = 0
        self.synced_by_ddp: set[int] = set()

    def on_fit_start(self, trainer: pl.Trainer, pl_module) -> None:
        # DDP wrapped the model just before this hook and averages the gradients only of the
        # parameters that trained then; groups opened later are averaged here (before_step)
        self.synced_by_ddp = {id(p) for p in pl_module.parameters() if p.requires_grad}
        has_val = trainer.limit_val_batches != 0 and pl_module.has_validation()
        n = len(pl_module.backbone.groups)
        self.schedule.check(n, has_val)
        self.start = sum(trainable_mask(pl_module.strategy, n))
        self._apply(trainer, pl_module, announce=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        if self.schedule.monitor is None:
            events = self.schedule.events_by(trainer.current_epoch)
            if events != self.events:
                self.events = events
                self._apply(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        fitting = getattr(getattr(trainer, "state", None), "fn", "fit") == "fit"
        if self.schedule.monitor is None or trainer.sanity_checking or not fitting:
            return  # trainer.validate() after fitting does not count
        value = trainer.callback_metrics.get(self.schedule.monitor)
        if value is None:
            raise ConfigError(
                f"Plateau unfreezing monitors '{self.schedule.monitor}', which is not logged; "
                "use a logged metric such as val/loss or val/acc."
            )
        value = float(value)
        if self.schedule.improves(value, self.best):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.schedule.patience:
            self.events, self.wait, self.best = self.events + 1, 0, None
            self._apply(trainer, pl_module)

    def _apply(self, trainer: pl.Trainer, pl_module, announce: bool = True) -> None:
        n = len(pl_module.backbone.groups)
        k = min(n, self.start + self.schedule.groups_after(self.events, n))
        opened = pl_module.set_trainable_top(k)
        if opened and announce:
            epoch = trainer.current_epoch
            if trainer.is_global_zero:
                log.info(
                    "epoch %d: unfroze %s (%d of %d groups train)", epoch, ", ".join(opened), k, n
                )
            for lg in trainer.loggers:
                lg.log_metrics({"unfreeze/trainable_groups": float(k)}, step=trainer.global_step)
            if self.schedule.rewarm and trainer.lr_scheduler_configs:
                trainer.lr_scheduler_configs[0].scheduler.restart_warmup(self.schedule.rewarm)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module, optimizer) -> None:
        """Average, across DDP ranks, the gradients of groups opened after DDP wrapped the model,
        as DDP does for the others; without it each rank would train them on its own batches."""
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        late = [
            p
            for p in pl_module.parameters()
            if p.grad is not None and id(p) not in self.synced_by_ddp
        ]
        if not late:
            return
        flat = torch.cat([p.grad.flatten() for p in late])
        torch.distributed.all_reduce(flat)
        flat /= trainer.world_size
        offset = 0
        for p in late:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()

    def state_dict(self) -> dict:
        return {"events": self.events, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state_dict: dict) -> None:
        self.events, self.best, self.wait = (
            state_dict["events"],
            state_dict["best"],
            state_dict["wait"],
        )
