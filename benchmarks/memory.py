"""(c) Frozen prefix: peak training memory and step time of feature extraction and partial
fine-tuning against full fine-tuning, on the same model and data."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from benchmarks.common import compose_cfg, median, quiet, ratio
from transferlab.build import build_datamodule, build_module
from transferlab.speed import StepTimer, peak_training_memory

STRATEGIES = ("feature_extraction", "partial", "full")
FULL = ["data=mnist_split", "backbone=resnet18", "backbone.weights=null"]
QUICK = ["data=synthetic", "backbone=tiny", "backbone.weights=null"]


def fit(cfg, batches: int, epochs: int, callbacks=(), profile: bool = False) -> int:
    """Fit the run's module on ``batches`` training batches per epoch, without validation;
    with ``profile``, return the peak training memory in bytes (else 0)."""
    pl.seed_everything(cfg.seed, workers=True)
    with quiet():
        dm = build_datamodule(cfg)
        dm.setup()
        module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
        trainer = pl.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            precision=cfg.trainer.precision,
            max_epochs=epochs,
            limit_train_batches=batches,
            limit_val_batches=0,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
            callbacks=list(callbacks),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        device = trainer.strategy.root_device
        module.to(device)  # weights and data are the baseline, allocated before measuring
        if not profile:
            trainer.fit(module, datamodule=dm)
            return 0
        return peak_training_memory(lambda: trainer.fit(module, datamodule=dm), device)


def run(work, quick: bool = False, reps: int = 2) -> dict:
    """Peak memory of 2 training steps (from a fresh optimizer) and median step time, per
    strategy; both relative to full fine-tuning."""
    base = QUICK if quick else FULL
    peaks = {s: [] for s in STRATEGIES}
    steps = {s: [] for s in STRATEGIES}
    for rep in range(reps):
        for strategy in STRATEGIES:
            cfg = compose_cfg([*base, f"strategy={strategy}"], work / f"{strategy}_{rep}")
            peaks[strategy].append(fit(cfg, batches=2, epochs=1, profile=True))
            timer = StepTimer()
            fit(cfg, batches=4, epochs=2, callbacks=[timer])
            steps[strategy] += timer.step_times()
    out = {"config": " ".join(base), "device": "cuda" if torch.cuda.is_available() else "cpu"}
    for s in STRATEGIES:
        out[s] = {
            "peak_mib": median(peaks[s]) / 2**20,
            "median_step_s": median(steps[s]),
            "memory_vs_full": ratio(median(peaks[s]), median(peaks["full"])),
            "step_time_vs_full": ratio(median(steps[s]), median(steps["full"])),
        }
    out["goal"] = "feature_extraction memory <= 0.4 x full"
    return out
