"""Callbacks that report on a run; the ones that change training live in strategies/."""

from __future__ import annotations

import pytorch_lightning as pl
from rich.console import Console
from rich.table import Table


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
    """At the start of training, print the per-group parameter table and log the totals."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = pl_module.parameter_report()
        if trainer.is_global_zero:
            Console().print(parameter_table(rows))
        totals = {
            "params/trainable": float(sum(r["trainable"] for r in rows)),
            "params/total": float(sum(r["params"] for r in rows)),
        }
        for logger in trainer.loggers:
            logger.log_metrics(totals, step=0)
