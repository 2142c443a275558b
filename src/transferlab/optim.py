"""Optimizer param groups built once, and LR schedules that honour each group's multiplier.

Every param group carries ``lr_mult``; its learning rate is always ``base_lr * lr_mult * f(step)``
where ``f`` is the schedule. Freezing or unfreezing a group changes ``lr_mult`` (0 = frozen), never
the list of groups, so schedulers, checkpoint resume and DDP keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from transferlab.errors import ConfigError


def build_param_groups(
    groups: Sequence[tuple[str, Iterable[tuple[str, nn.Parameter]]]],
    multipliers: Sequence[float],
    base_lr: float,
    weight_decay: float,
    no_decay_names: Iterable[str] = (),
) -> list[dict]:
    """One param group per named layer group, split in two where some tensors take no decay.

    Biases, norm weights (every tensor with ndim <= 1) and ``no_decay_names`` get no weight decay.

    Args:
        groups: ``(group name, named parameters)`` bottom to top, head last.
        multipliers: LR multiplier of each group (0 = frozen).
        base_lr: the head's learning rate.
        weight_decay: decay for matrix and conv weights.
        no_decay_names: extra parameter names that skip decay (e.g. timm's ``no_weight_decay()``).
    """
    skip = set(no_decay_names)
    param_groups = []
    for (name, named_params), mult in zip(groups, multipliers, strict=True):
        decay, no_decay = [], []
        for pname, p in named_params:
            (no_decay if p.ndim <= 1 or pname in skip else decay).append(p)
        for suffix, params, wd in (("", decay, weight_decay), ("/no_decay", no_decay, 0.0)):
            if params:
                param_groups.append(
                    {
                        "params": params,
                        "name": name + suffix,
                        "group": name,
                        "lr_mult": float(mult),
                        "lr": base_lr * mult,
                        "initial_lr": base_lr,
                        "weight_decay": wd,
                    }
                )
    return param_groups


def set_group_multiplier(optimizer: Optimizer, group: str, mult: float) -> None:
    """Change the LR multiplier of a named layer group (both its decay halves)."""
    for pg in optimizer.param_groups:
        if pg["group"] == group:
            pg["lr_mult"] = float(mult)


def refresh_lrs(optimizer: Optimizer, scheduler: MultiplierLR | None) -> None:
    """Recompute every group's current LR after multipliers changed, so the very next step
    already uses them (schedulers only update LRs after a step)."""
    lrs = (
        scheduler.get_lr()
        if scheduler
        else [pg["initial_lr"] * pg["lr_mult"] for pg in optimizer.param_groups]
    )
    for pg, lr in zip(optimizer.param_groups, lrs, strict=True):
        pg["lr"] = lr


class MultiplierLR(LRScheduler):
    """Sets every group's LR to ``initial_lr * lr_mult * schedule(step, total_steps)``.

    Unlike torch's schedulers it reads ``lr_mult`` at every step, so a group unfrozen later
    follows the schedule from that point on.
    """

    def __init__(self, optimizer: Optimizer, schedule, total_steps: int, last_epoch: int = -1):
        if total_steps < 1:
            raise ConfigError(
                "The LR schedule needs a known, positive number of training steps but this run "
                "has none; set trainer.max_epochs to a number of epochs >= 1 or trainer.max_steps."
            )
        self.schedule = schedule
        self.total_steps = total_steps
        self.rewarm_start, self.rewarm_steps = 0, 0
        super().__init__(optimizer, last_epoch)

    def restart_warmup(self, steps: int) -> None:
        """Ramp every LR linearly up again over the next ``steps`` steps (two-phase recipes)."""
        self.rewarm_start, self.rewarm_steps = self.last_epoch, steps
        refresh_lrs(self.optimizer, self)

    def get_lr(self) -> list[float]:
        factor = self.schedule(self.last_epoch, self.total_steps)
        if self.rewarm_steps:
            factor *= min(1.0, (self.last_epoch - self.rewarm_start + 1) / self.rewarm_steps)
        return [
            base * pg["lr_mult"] * factor
            for base, pg in zip(self.base_lrs, self.optimizer.param_groups, strict=True)
        ]

    def state_dict(self) -> dict:
        # The schedule is config, rebuilt on resume; keep the checkpoint free of pickled objects.
        return {k: v for k, v in super().state_dict().items() if k != "schedule"}
