"""Logging the training losses (``train/loss``, the regulariser's and the domain-alignment loss)
without a ``self.log`` call per step.

Each ``self.log`` call cost Lightning 0.85-0.9 ms of CPU time (measured on this project's
shared 2-core machine under a load of 7-8; its result collection moves and checks the stored
entry at every call; 0.09-0.12 ms since :func:`transferlab.speed.skip_needless_log_moves`),
a large share of a small model's step. So the losses are summed on the device at every step
and logged once per epoch, and the step loss is logged only at the steps where Lightning
writes step metrics to the loggers and at an epoch's last step. The logged values are those of
``self.log(name, value, on_step=..., on_epoch=True)``, to the last bit:

- ``train/loss_step`` in the loggers every ``log_every_n_steps`` (and the run's last value in the
  trainer's ``callback_metrics``), ``train/loss_epoch`` once per epoch;
- ``train/loss`` in ``callback_metrics``: the epoch's last step loss until the epoch ends (so
  validation, which follows that step, sees it), then the epoch mean;
- every other name (``train/reg_loss``, ``train/da_loss``, …) once per epoch, its epoch mean.

Callbacks that read ``callback_metrics`` in the middle of an epoch see the step loss of the
last logged step, not of every step.
"""

from __future__ import annotations

import torch

LOSS = "train/loss"


class EpochMeans:
    """Batch-size-weighted means over an epoch of the values training steps :meth:`add`; each
    step's values are weighted with its batch size when the step ends (:meth:`end_step`).

    The sums stay on the device: two tensor operations per value and step, no host sync. The
    arithmetic is Lightning's for an epoch-level ``self.log`` (``sum + value * batch_size`` in
    the value's float type, divided by the summed batch sizes), so the means are the same.
    """

    def __init__(self):
        self.step: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        self.step[name] = value.detach()

    def end_step(self, batch_size: int) -> None:
        for name, value in self.step.items():
            if value.dtype not in (torch.float32, torch.float64):
                value = value.to(torch.get_default_dtype())
            weighted = value * batch_size
            total = self.sums.get(name)
            self.sums[name] = weighted if total is None else total + weighted
            self.counts[name] = self.counts.get(name, 0) + batch_size
        self.step = {}

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: total / self.counts[name] for name, total in self.sums.items()}

    def reset(self) -> None:
        self.step, self.sums, self.counts = {}, {}, {}


def writes_step_metrics(trainer) -> bool:
    """Whether Lightning sends this training step's logged values to the loggers (every
    ``log_every_n_steps``, at a stop, every step of a ``fast_dev_run``). Where a Lightning
    version keeps that elsewhere: True, so the step loss is logged at every step."""
    connector = getattr(trainer, "_logger_connector", None)
    if connector is None or not hasattr(type(connector), "should_update_logs"):
        return True
    return bool(connector.should_update_logs or trainer.fast_dev_run)


def ends_epoch(trainer) -> bool:
    """Whether the training step that just ran is the last of its epoch: the loader's last
    batch, ``limit_train_batches`` or ``max_steps`` reached, or a stop asked for."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.is_last_batch or progress.current.ready >= trainer.num_training_batches:
        return True
    max_steps = trainer.max_steps if trainer.max_steps is not None else -1
    return 0 <= max_steps <= trainer.global_step or trainer.should_stop


def log_step_loss(module, loss: torch.Tensor | None) -> None:
    """At a training step's end (``on_train_batch_end``): log its loss where it is read."""
    if loss is None:
        return
    trainer = module.trainer
    last = ends_epoch(trainer)
    if last or writes_step_metrics(trainer):
        module.log(f"{LOSS}_step", loss, on_step=True, on_epoch=False)
    if last:
        module.log(LOSS, loss, on_step=True, on_epoch=False, logger=False)


def log_epoch_means(module, means: dict[str, torch.Tensor]) -> None:
    """At a training epoch's end: the epoch means, ``train/loss`` as ``train/loss_epoch`` in the
    loggers and as ``train/loss`` in ``callback_metrics``."""
    means = dict(means)
    loss = means.pop(LOSS, None)
    if loss is not None:
        module.log(f"{LOSS}_epoch", loss)
        module.log(LOSS, loss, logger=False)
    for name, value in means.items():
        module.log(name, value)
