"""The training loop's outer steps: fit, then score the best checkpoint (and the domain oracle's)
on val and test. Knows the trainer and the module, not the config."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from transferlab.domain import ORACLE_MONITOR
from transferlab.module import TransferModule


def fit_and_evaluate(trainer: pl.Trainer, module: TransferModule, dm, ckpt_path: str | None):
    """Fit, then score the best checkpoint on val and test; returns (metrics, best ckpt path)."""
    # checkpoints are data, never code: every load is weights_only, whatever the environment says
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics["steps/run"] = float(trainer.global_step)  # optimizer steps, early stopping included
    if best:  # the step the scored weights were saved at
        saved = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
        metrics["steps/best"] = float(saved["global_step"])
    metrics.update(oracle_metrics(trainer, module, dm))  # before "best": the module ends on it
    for stage in (trainer.validate, trainer.test):
        found = stage(
            module, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True
        )
        for results in found:
            metrics.update({k: float(v) for k, v in results.items()})
    rows = module.parameter_report()
    metrics["params/trainable"] = float(sum(r["trainable"] for r in rows))
    metrics["params/total"] = float(sum(r["params"] for r in rows))
    return dict(sorted(metrics.items())), best


def oracle_metrics(trainer: pl.Trainer, module: pl.LightningModule, datamodule) -> dict:
    """Test metrics of the oracle checkpoint, named ``oracle/test/…`` and ``oracle/test_source/…``.

    The oracle peeks at target labels to pick its checkpoint: an upper bound on what model
    selection can give, never a result of the method.
    """
    callback = next(
        (
            c
            for c in trainer.callbacks
            if isinstance(c, ModelCheckpoint) and c.monitor == ORACLE_MONITOR
        ),
        None,
    )
    if callback is None or not callback.best_model_path:
        return {}
    results = trainer.test(
        module,
        datamodule=datamodule,
        ckpt_path=callback.best_model_path,
        verbose=False,
        weights_only=True,
    )
    return {f"oracle/{k}": float(v) for r in results for k, v in r.items()}
