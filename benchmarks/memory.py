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


def fit(cfg, batches: int, epochs: int, callbacks=(), profile: bool = False, count: bool = False):
    """Fit the run's module on ``batches`` training batches per epoch, without validation;
    with ``profile``, return the peak training memory in bytes; with ``count``, (trainable,
    total) parameters; else 0."""
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
            rows = module.parameter_report()
            counts = (sum(r["trainable"] for r in rows), sum(r["params"] for r in rows))
            return counts if count else 0
        return peak_training_memory(lambda: trainer.fit(module, datamodule=dm), device)


def run(work, quick: bool = False, reps: int = 2) -> dict:
    """Peak memory of 2 training steps (from a fresh optimizer) and median step time, per
    strategy; both relative to full fine-tuning."""
    base = QUICK if quick else FULL
    out = measure(work, base, {s: [f"strategy={s}"] for s in STRATEGIES}, reps)
    out["goal"] = "feature_extraction memory <= 0.4 x full"
    return out


def measure(work, base: list[str], arms: dict[str, list[str]], reps: int = 2) -> dict:
    """Per arm (name -> overrides on ``base``, one of them ``full``): peak memory of 2 training
    steps from a fresh optimizer and median step time, both also relative to ``full``. The
    arms are interleaved within each repetition, so a busy machine slows them alike."""
    peaks = {a: [] for a in arms}
    steps = {a: [] for a in arms}
    trainable = {}
    for rep in range(reps):
        for arm, overrides in arms.items():
            cfg = compose_cfg([*base, *overrides], work / f"{arm}_{rep}")
            peaks[arm].append(fit(cfg, batches=2, epochs=1, profile=True))
            timer = StepTimer()
            trainable[arm] = fit(cfg, batches=4, epochs=2, callbacks=[timer], count=True)
            steps[arm] += timer.step_times()
    out = {"config": " ".join(base), "device": "cuda" if torch.cuda.is_available() else "cpu"}
    for a in arms:
        out[a] = {
            "peak_mib": median(peaks[a]) / 2**20,
            "median_step_s": median(steps[a]),
            "memory_vs_full": ratio(median(peaks[a]), median(peaks["full"])),
            "step_time_vs_full": ratio(median(steps[a]), median(steps["full"])),
            "trainable_params": trainable[a][0],
            "total_params": trainable[a][1],
        }
    return out
