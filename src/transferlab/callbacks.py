"""Callbacks that report on a run; the ones that change training live in strategies/."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytorch_lightning as pl
from rich.console import Console
from rich.table import Table

log = logging.getLogger("transferlab")


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
    for col in ("group", "params", "trainable", "lr"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for r in rows:
        lr = f"{r['lr']:.2e}" if r["lr"] else "frozen"
        table.add_row(r["group"], f"{r['params']:,}", f"{r['trainable']:,}", lr)
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

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if not trainer.optimizers:
            return
        self.steps.append(trainer.global_step)
        for group in trainer.optimizers[0].param_groups:
            name = group.get("group", group.get("name", "all"))
            if len(self.lrs.setdefault(name, [])) < len(self.steps):
                self.lrs[name].append(group["lr"])

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.is_global_zero and self.steps:
            from transferlab.plots import save_lr_per_group

            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_lr_per_group(self.steps, self.lrs, self.path)

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "lrs": {k: list(v) for k, v in self.lrs.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.steps, self.lrs = list(state_dict["steps"]), dict(state_dict["lrs"])
