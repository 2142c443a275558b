"""Unfreezing over time: ULMFiT-style gradual unfreezing and the two-phase recipe.

The schedule is plain data (:class:`UnfreezeSchedule`); :class:`Unfreezer` is the thin callback
that applies it. Unfreezing changes group multipliers and ``requires_grad`` only: the optimizer
keeps its param groups, so schedulers, checkpoint resume and DDP are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pytorch_lightning as pl

from transferlab.errors import ConfigError

log = logging.getLogger("transferlab")


@dataclass(frozen=True)
class UnfreezeSchedule:
    """When frozen backbone groups start training, top group first.

    Exactly one trigger: ``every`` N epochs one more group, explicit epoch ``milestones`` (one
    more group at each), or ``monitor`` on plateau (one more group after ``patience`` epochs
    without improvement).

    Args:
        every: unfreeze one more group every N epochs.
        milestones: epochs at which one more group is unfrozen.
        monitor: validation metric for plateau unfreezing (e.g. ``val/loss``).
        mode: ``min`` or ``max`` for ``monitor``.
        patience: epochs without improvement before the next group is unfrozen.
        min_delta: the relative change that counts as an improvement (0.02 = 2% better than
            the best so far); 0 counts any change. Under a decaying LR a head-only phase keeps
            improving by tiny steps, so 0 may never see a plateau.
        groups_per_step: groups unfrozen at each event (``all`` = the whole backbone at once).
        rewarm: linear LR warm-up (steps) restarted at each event; 0 disables it.
    """

    every: int | None = None
    milestones: Sequence[int] | None = None
    monitor: str | None = None
    mode: str = "min"
    patience: int = 1
    min_delta: float = 0.0
    groups_per_step: int | str = 1
    rewarm: int = 0

    def __post_init__(self):
        chosen = [x is not None for x in (self.every, self.milestones, self.monitor)]
        if sum(chosen) != 1:
            raise ConfigError(
                "strategy.unfreeze needs exactly one of every, milestones or monitor; "
                "set the others to null."
            )
        if self.every is not None and self.every < 1:
            raise ConfigError(f"strategy.unfreeze.every must be >= 1, got {self.every}.")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"strategy.unfreeze.mode must be min or max, got '{self.mode}'.")
        if not 0 <= self.min_delta < 1:
            raise ConfigError(
                f"strategy.unfreeze.min_delta must be in [0, 1) (a relative change), "
                f"got {self.min_delta}."
            )

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta`` (relative)."""
        if best is None:
            return True
        margin = self.min_delta * abs(best)
        return value < best - margin if self.mode == "min" else value > best + margin

    def events_by(self, epoch: int) -> int:
        """Unfreeze events that happened by the start of ``epoch`` (epoch-triggered schedules)."""
        if self.every is not None:
            return epoch // self.every
        if self.milestones is not None:
            return sum(1 for m in self.milestones if m <= epoch)
        return 0

    def groups_after(self, events: int, num_groups: int) -> int:
        """How many top groups train after ``events`` events, capped at ``num_groups``."""
        per = num_groups if self.groups_per_step == "all" else int(self.groups_per_step)
        return min(num_groups, events * per)

    def check(self, num_groups: int, has_val: bool) -> None:
        """Reject schedules that cannot happen on this backbone and trainer."""
        if self.monitor is not None and not has_val:
            raise ConfigError(
                f"Plateau unfreezing monitors '{self.monitor}' but there is no validation set; "
                "use unfreeze.every or unfreeze.milestones, or enable validation."
            )
        if self.milestones is not None and self.groups_per_step != "all":
            needed = len(self.milestones) * int(self.groups_per_step)
            if needed > num_groups:
                raise ConfigError(
                    f"The unfreeze schedule asks for {needed} layer groups but the backbone has "
                    f"only {num_groups}; give at most {num_groups} milestones."
                )


class Unfreezer(pl.Callback):
    """Applies an :class:`UnfreezeSchedule` to a :class:`~transferlab.module.TransferModule`."""

    def __init__(self, schedule: UnfreezeSchedule):
        self.schedule = schedule
        self.events = 0
        self.best: float | None = None
        self.wait = 0
        self.start = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module) -> None:
        from transferlab.strategies.core import trainable_mask

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

    def state_dict(self) -> dict:
        return {"events": self.events, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state_dict: dict) -> None:
        self.events, self.best, self.wait = (
            state_dict["events"],
            state_dict["best"],
            state_dict["wait"],
        )
