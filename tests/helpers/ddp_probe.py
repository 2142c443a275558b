"""A callback for the DDP test, loaded by the training processes through ``+callbacks.probe``.

At every training step each rank gathers every rank's trainable mask and checks they agree, and
checks that every frozen group still holds its weights from the start of training; at the end
it records the weights. Each rank writes what it saw to ``<out>/probe_rank<k>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


class MaskProbe(pl.Callback):
    def __init__(self, out: str):
        self.out = Path(out)
        self.masks: list[list[bool]] = []
        self.disagreements = 0
        self.frozen_changed = 0

    def on_fit_start(self, trainer, pl_module):
        self.start = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        groups = pl_module.named_group_parameters()
        mask = [all(p.requires_grad for _, p in params) for _, params in groups]
        gathered = trainer.strategy.all_gather(torch.tensor(mask, dtype=torch.int64))
        self.disagreements += int((gathered != gathered[0]).any())
        self.masks.append(mask)
        prefix = {"backbone.model." + n for _, params in groups[:-1] for n, _ in params}
        for name, p in pl_module.named_parameters():
            if name in prefix and not p.requires_grad and not torch.equal(p, self.start[name]):
                self.frozen_changed += 1

    def on_fit_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        report = {
            "world_size": trainer.world_size,
            "masks": self.masks,
            "disagreements": self.disagreements,
            "frozen_changed": self.frozen_changed,
            # every parameter at the end: the ranks must hold the same model
            "weights": {
                n: p.detach().double().flatten().tolist()[:64]
                for n, p in pl_module.named_parameters()
            },
        }
        (self.out / f"probe_rank{trainer.global_rank}.json").write_text(json.dumps(report))
