"""Many heads over one frozen backbone, in one process (``hydra/launcher=heads``).

Each head trains on the cached backbone features the way its own ``transferlab-train`` run
trains it: the same initial weights, batches, optimizer and per-step schedule, gradient clipping,
best-epoch choice on the validation metric, and the same metrics, computed by the module's own
loss and metric code. What a run pays beyond a few small matrix products per epoch (starting
Python and torch, building the backbone, the Trainer and its hooks, checkpoint copies, plots)
is paid once for the whole sweep instead of once per head. ``tests/test_head_sweep.py`` checks
the metrics against separate runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from transferlab.cache import EVAL_BATCH, FeatureData
from transferlab.data.sampling import EpochShuffle
from transferlab.errors import ConfigError
from transferlab.module import TransferModule


@dataclass
class HeadFit:
    """One trained head: final metrics (``train/…`` of the last epoch, ``val/…`` and ``test/…``
    of the best epoch), one history row per epoch, and the best epoch's head weights."""

    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


class WeightedMean:
    """Mean of per-batch values weighted by batch size, accumulated as Lightning's epoch
    logging accumulates it (so the figures match a Trainer run's)."""

    def __init__(self):
        self.total, self.count = torch.tensor(0.0), 0

    def update(self, value: torch.Tensor, n: int) -> None:
        self.total = self.total + value.detach().float().cpu() * n
        self.count += n

    def compute(self) -> float:
        return float(self.total / self.count)


def better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` improves on ``best`` (strictly, as ModelCheckpoint decides)."""
    if math.isnan(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def batches(x: torch.Tensor, y: torch.Tensor, order: list[int], size: int, drop_last=False):
    """(features, labels) batches of ``size`` rows in ``order``: what a DataLoader with that
    order gives, gathered in one indexing op per batch instead of row by row."""
    stop = len(order) - len(order) % size if drop_last else len(order)
    for i in range(0, stop, size):
        rows = torch.tensor(order[i : i + size])
        yield x[rows], y[rows]


@torch.no_grad()
def evaluate(module: TransferModule, data: FeatureData, stage: str) -> dict[str, float]:
    """``stage/loss`` and the stage's metric collection over a split, the head in eval mode
    (on features the backbone never runs, so only the head's mode matters)."""
    module.head.eval()
    [metrics] = module.eval_metrics(stage)  # a single-domain module: one collection
    loss = WeightedMean()
    device = module.mean.device
    x_all, y_all = data.features[stage]
    for x, y in batches(x_all, y_all, list(range(len(y_all))), max(data.batch_size, EVAL_BATCH)):
        x, y = x.to(device), y.to(device)
        batch_loss, logits = module.eval_batch(x, y, metrics)
        loss.update(batch_loss, len(y))
        if stage == "test":
            module.update_test_plots(logits, y)
    out = {k: float(v) for k, v in module.epoch_metrics(stage).items()}
    if stage == "test":
        module.finish_test_plots()
    return {f"{stage}/loss": loss.compute(), **out}


def train_epoch(module, data: FeatureData, epoch: int, optimizer, scheduler, clip) -> dict:
    """One epoch of head training; returns ``train/…`` metrics (the loss as last step / mean)."""
    module.head.train()
    loss_mean, device, params = WeightedMean(), module.mean.device, trainable(optimizer)
    x_all, y_all = data.features["train"]
    order = EpochShuffle(len(y_all), data.seed)  # the order the run's loader serves
    order.set_epoch(epoch)
    for x, y in batches(x_all, y_all, list(order), data.batch_size, data.drop_last):
        x, y = x.to(device), y.to(device)
        loss, _ = module.classification_loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_mean.update(loss, len(y))
    last = float(loss.detach())
    if not (math.isfinite(last) and math.isfinite(loss_mean.compute())):
        raise ConfigError(
            f"Training diverged: the loss became {last} (optimizer.lr="
            f"{module.base_lr:g}); lower optimizer.lr or keep gradient clipping on "
            "(trainer.gradient_clip_val=1.0)."
        )
    out = {k: float(v) for k, v in module.train_metrics.compute().items()}
    module.train_metrics.reset()
    mean = loss_mean.compute()
    return {"train/loss": mean, "train/loss_epoch": mean, "train/loss_step": last, **out}


def trainable(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter of the optimizer's groups, in order (the ones Lightning clips)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread: a head's steps are small matrix products, where more threads
    only wait for each other (10 epochs of a linear head took 0.3 s on one thread, 1.6-2.2 s on
    two, on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_head(
    module: TransferModule,
    data: FeatureData,
    epochs: int,
    clip: float | None = None,
    monitor: str = "val/acc",
    mode: str = "max",
) -> HeadFit:
    """Train ``module``'s head on cached features for ``epochs``, keep the best epoch by
    ``monitor`` (the last one without validation data), then score it on val and test."""
    n_train = len(data.features["train"][1])
    per_epoch = n_train // data.batch_size if data.drop_last else -(-n_train // data.batch_size)
    optimizer, scheduler = module.build_optimizer(epochs * per_epoch)
    has_val = len(data.features["val"][1]) > 0
    fit = HeadFit(metrics={})
    best, train = None, {}
    for epoch in range(epochs):
        train = train_epoch(module, data, epoch, optimizer, scheduler, clip)
        row = {"epoch": epoch, "step": (epoch + 1) * per_epoch, **train}
        if has_val:
            row.update(evaluate(module, data, "val"))
        fit.history.append(row)
        score = row.get(monitor)
        if score is None:
            raise ConfigError(
                f"Each head's best epoch is picked by {monitor}, which this run does not "
                "compute; set optimized_metric to a val/ metric and give the data a validation "
                "split."
            )
        if better(score, best, mode):
            best, fit.best_epoch = score, epoch
            fit.best_state = copy.deepcopy(module.head.state_dict())
    module.head.load_state_dict(fit.best_state)
    fit.metrics.update(train)
    # as a Lightning fit records them: the steps run and the step the best epoch ended at
    fit.metrics["steps/run"] = float(epochs * per_epoch)
    fit.metrics["steps/best"] = float((fit.best_epoch + 1) * per_epoch)
    if has_val:
        fit.metrics.update(evaluate(module, data, "val"))
    if len(data.features["test"][1]):
        fit.metrics.update(evaluate(module, data, "test"))
    rows = module.parameter_report()
    fit.metrics["params/trainable"] = float(sum(r["trainable"] for r in rows))
    fit.metrics["params/total"] = float(sum(r["params"] for r in rows))
    return fit
