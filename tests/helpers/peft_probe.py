"""A callback for the LoRA DDP test, loaded by the training processes through
``+callbacks.probe``: at the end of fitting each rank writes ``<out>/lora_rank<k>.json`` with
the values of its trainable backbone parameters (the LoRA updates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class LoraProbe(pl.Callback):
    def __init__(self, out: str):
        self.out = Path(out)

    def on_fit_end(self, trainer, pl_module):
        trained = {
            n: p.detach().flatten().tolist()
            for n, p in pl_module.named_parameters()
            if p.requires_grad and n.startswith("backbone.")
        }
        self.out.mkdir(parents=True, exist_ok=True)
        report = {"world_size": trainer.world_size, "trained": trained}
        (self.out / f"lora_rank{trainer.global_rank}.json").write_text(json.dumps(report))
