"""Share of training-step time spent waiting for data, for one training config.

    .venv/bin/python experiments/augmentation/data_wait.py augmentation=strong data.num_workers=0

The wait is the time from the end of one training step to the start of the next, within an
epoch; the share is wait / (wait + step). The first batch of each epoch is reported apart,
because its wait also covers starting the loader (and the epoch-start hooks); the first epoch's
also covers starting the worker processes.
"""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl

from transferlab import compose
from transferlab.build import build_datamodule, build_module


class DataWaitTimer(pl.Callback):
    """Sums step time and the waits between steps, split into first-of-epoch and the rest."""

    def __init__(self):
        self.step = self.wait = 0.0
        self.first_waits: list[float] = []  # one per epoch
        self.steps = 0
        self._mark: float | None = None
        self._first = True

    def on_train_epoch_start(self, trainer, module):
        self._mark, self._first = time.perf_counter(), True

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        now = time.perf_counter()
        if self._first:
            self.first_waits.append(now - self._mark)
        else:
            self.wait += now - self._mark
        self._mark, self._first = now, False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.step += now - self._mark
        self.steps += 1
        self._mark = now


def main(overrides: list[str]) -> None:
    cfg = compose(overrides)
    pl.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    timer = DataWaitTimer()
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_epochs=cfg.trainer.max_epochs,
        limit_val_batches=0,  # only training steps matter here
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    waits, total = timer.wait, timer.wait + timer.step
    later = sum(timer.first_waits[1:])
    first_epoch = timer.first_waits[0]
    print(f"config: {' '.join(overrides)}")
    print(f"steps: {timer.steps}, mean step {1000 * timer.step / timer.steps:.1f} ms")
    print(f"data wait within epochs: {waits / total:.1%} of step time")
    print(f"  + first batch of epochs 2..: {(waits + later) / (total + later):.1%}")
    print(
        f"  + first batch of epoch 1: {(waits + later + first_epoch) / (total + later + first_epoch):.1%}"
    )
    print(f"first-batch waits (s): {' '.join(f'{w:.2f}' for w in timer.first_waits)}")


if __name__ == "__main__":
    main(sys.argv[1:])
