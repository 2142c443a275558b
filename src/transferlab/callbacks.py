"""Callbacks that report on a run or guard it (divergence, Ctrl-C); the ones that change training
live in strategies/."""

from __future__ import annotations

import io
import logging
import math
import shlex
from pathlib import Path

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table

from transferlab.errors import ConfigError

log = logging.getLogger("transferlab")


# the hooks Lightning calls for every batch, through one loop that passes over any callback
# whose attribute for the hook is not callable
BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def skip_inherited_batch_hooks(callbacks: list[pl.Callback]) -> None:
    """Let Lightning pass over the per-batch hooks that callbacks inherit from ``pl.Callback``,
    where they do nothing, by shadowing each with ``None`` on the instance.

    Lightning calls every hook of every callback, doing nothing or not, each call in a profiler
    context named after the callback: about 7 us a callback and hook on this project's CPUs,
    44 us a hook for the default run's 6 callbacks, 6 hooks a training step. A callback's own
    hooks, and calls through its class (``super()``), are untouched. (Not for a LightningModule:
    Lightning reads the signatures of its batch hooks.)
    """
    for callback in callbacks:
        for name in BATCH_HOOKS:
            if getattr(type(callback), name, None) is getattr(pl.Callback, name):
                setattr(callback, name, None)


def render(renderable, width: int = 100) -> str:
    """A rich renderable (table, text) as plain text, for the log."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue().rstrip()


def parameter_table(rows: list[dict]) -> Table:
    """A rich table of the module's parameter report, with a total line."""
    total = sum(r["params"] for r in rows)
    trainable = sum(r["trainable"] for r in rows)
    table = Table(
        caption=f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / max(total, 1):.1f}%)"
    )
    adapters = any(r.get("adapter") for r in rows)  # a PEFT strategy added parameters
    columns = ["group", "params", *(["adapter"] if adapters else []), "trainable", "%", "lr"]
    for col in columns:
        table.add_column(col, justify="left" if col == "group" else "right")
    for r in rows:
        lr = f"{r['lr']:.2e}" if r["lr"] else "frozen"
        share = 100 * r["trainable"] / max(r["params"], 1)
        cells = [r["group"], f"{r['params']:,}"]
        cells += [f"{r.get('adapter', 0):,}"] if adapters else []
        table.add_row(*cells, f"{r['trainable']:,}", f"{share:.1f}", lr)
    return table


class ParameterReport(pl.Callback):
    """At the start of training, log the per-group parameter table (console and ``train.log``)
    and send the totals and the per-group rows to the experiment loggers."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = pl_module.parameter_report()
        if trainer.is_global_zero:
            log.info("parameters per layer group:\n%s", render(parameter_table(rows)))
        totals = {
            "params/trainable": float(sum(r["trainable"] for r in rows)),
            "params/total": float(sum(r["params"] for r in rows)),
        }
        groups = {r["group"]: {k: v for k, v in r.items() if k != "group"} for r in rows}
        if trainer.ckpt_path:  # a resumed run: the run before it logged these already
            return
        for logger in trainer.loggers:
            logger.log_metrics(totals, step=0)
            logger.log_hyperparams({"param_groups": groups})


class LRHistory(pl.Callback):
    """Record every layer group's learning rate at every optimizer step; plot them at the end.

    The history is part of the checkpoint, so a resumed run plots its whole schedule.

    Args:
        path: where to write the PNG (LR per group against step).
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self.steps: list[int] = []
        self.lrs: dict[str, list[float]] = {}
        self._groups: list[dict] | None = None  # the optimizer's param groups, as last seen
        self._n_groups = 0
        self._recorded: list[tuple[list[float], dict]] = []  # (history, its first param group)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if not trainer.optimizers:
            return
        groups = trainer.optimizers[0].param_groups
        if groups is not self._groups or len(groups) != self._n_groups:
            self._recorded = self.recorded_groups(groups)
            self._groups, self._n_groups = groups, len(groups)
        self.steps.append(trainer.global_step)
        for history, group in self._recorded:
            if len(history) < len(self.steps):
                history.append(group["lr"])

    def recorded_groups(self, groups: list[dict]) -> list[tuple[list[float], dict]]:
        """Each layer group's history with its first param group (the no-decay half of a
        group has the same LR). The optimizer's group list never changes during a fit."""
        first: dict[str, dict] = {}
        for group in groups:
            first.setdefault(group.get("group", group.get("name", "all")), group)
        return [(self.lrs.setdefault(name, []), group) for name, group in first.items()]

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.is_global_zero and self.steps:
            from transferlab.plots import save_lr_per_group

            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_lr_per_group(self.steps, self.lrs, self.path)

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "lrs": {k: list(v) for k, v in self.lrs.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.steps, self.lrs = list(state_dict["steps"]), dict(state_dict["lrs"])
        self._groups, self._recorded = None, []  # the histories to append to were replaced


class DivergenceGuard(pl.Callback):
    """Stops a run as soon as its training loss is NaN or infinite, before a checkpoint of the
    diverged model can be saved (it runs before every checkpoint callback).

    Each step only keeps its loss tensor (no device work, no host-device sync); the kept losses
    are checked together, in one read, before validation, at the epoch's end and every
    ``FOLD_EVERY`` steps (which bounds what is kept).
    """

    FOLD_EVERY = 256

    def __init__(self):
        self.losses: list[torch.Tensor] = []
        self.steps: list[int] = []  # the global step of each kept loss
        self.first_bad: tuple[int, float] | None = None  # (step, value) of the first bad loss

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or self.first_bad is not None:
            return
        self.losses.append(loss.detach())
        self.steps.append(trainer.global_step)
        if len(self.losses) >= self.FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Check the kept losses (one host read) and keep the first non-finite one, if any."""
        if self.losses and self.first_bad is None:
            finite = torch.isfinite(torch.stack(self.losses))
            if not bool(finite.all()):
                i = int(torch.argmin(finite.int()))  # argmin returns the first minimum
                self.first_bad = (self.steps[i], float(self.losses[i]))
        self.losses, self.steps = [], []

    def check(self, trainer, pl_module) -> None:
        what = None
        self.fold()
        if self.first_bad is not None:
            step, value = self.first_bad
            what = f"the loss became {'NaN' if math.isnan(value) else 'infinite'} at step {step}"
        elif not weights_finite(pl_module):  # one update can break the weights before the loss
            what = f"the weights became NaN or infinite by step {trainer.global_step}"
        if what is None:
            return
        lr = getattr(pl_module, "base_lr", "?")
        raise ConfigError(
            f"Training diverged: {what}; lower optimizer.lr (now {lr}) or train in full "
            f"precision (trainer.precision=32-true, now {trainer.precision})."
        )

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer, pl_module)


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every trainable parameter is finite (one host read for the whole model)."""
    checks = [torch.isfinite(p).all() for p in module.parameters() if p.requires_grad]
    return bool(torch.stack(checks).all()) if checks else True


class InterruptHint(pl.Callback):
    """On Ctrl-C, logs (console and train.log) the exact command that resumes the run."""

    def __init__(self, last_checkpoint: str | Path):
        self.last_checkpoint = Path(last_checkpoint)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        if not self.last_checkpoint.is_file():
            log.warning("interrupted at %s, before the first epoch ended: no checkpoint yet", where)
            return
        log.warning(
            "interrupted at %s; resume with:\n  %s", where, resume_command(self.last_checkpoint)
        )


def resume_command(last_checkpoint: Path) -> str:
    """``transferlab-train <this run's overrides> ckpt_path=<last.ckpt> hydra.run.dir=<run dir>``."""
    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        overrides = [str(o) for o in HydraConfig.get().overrides.task]
    drop = ("ckpt_path=", "hydra.run.dir=")
    kept = [shlex.quote(o) for o in overrides if not o.lstrip("+~").startswith(drop)]
    run_dir = last_checkpoint.parent.parent
    extra = [
        f"ckpt_path={shlex.quote(str(last_checkpoint))}",
        f"hydra.run.dir={shlex.quote(str(run_dir))}",
    ]
    return " ".join(["transferlab-train", *kept, *extra])
