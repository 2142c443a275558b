"""(a) Framework overhead: median training-step time of ``transferlab-train`` against a plain
PyTorch loop over the same model, data, optimizer, schedule and clipping."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from benchmarks.common import compose_cfg, median, plain_loop, quiet, ratio
from transferlab.build import build_datamodule, build_module
from transferlab.optim import MultiplierLR, build_param_groups
from transferlab.train import train

FULL = [
    "data=mnist_split",
    "backbone=resnet18",
    "backbone.weights=null",
    "strategy=full",
    "trainer.max_epochs=3",
    "+trainer.limit_test_batches=1",
]
QUICK = [
    "data=synthetic",
    "backbone=tiny",
    "backbone.weights=null",
    "trainer.max_epochs=2",
    "+trainer.limit_test_batches=1",
]
TIMER = [
    "+callbacks.step_timer._target_=transferlab.speed.StepTimer",
    "+callbacks.step_timer.path=${paths.output_dir}/step_times.json",
]


def transferlab_steps(overrides: list[str], run_dir: Path) -> list[float]:
    """Per-step seconds of one ``transferlab-train`` run (its ``train(cfg)``, in this process)."""
    cfg = compose_cfg([*overrides, *TIMER], run_dir)
    with quiet():
        train(cfg)
    records = json.loads((run_dir / "step_times.json").read_text())["records"]
    return [wait + compute for first, wait, compute in records if not first]


def plain_steps(
    overrides: list[str],
    run_dir: Path,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> list[float]:
    """Per-step seconds of a plain loop over the model, data and optimizer that run would use."""
    cfg = compose_cfg(overrides, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    with quiet():
        dm = build_datamodule(cfg)
        dm.setup()
        module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device)
    model = torch.nn.Sequential(module.backbone, module.head)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt_factory = instantiate(cfg.optimizer)
    groups = build_param_groups(
        module.named_group_parameters(),
        module.lr_multipliers,
        module.base_lr,
        opt_factory.keywords.get("weight_decay", 0.0),
    )
    optimizer = opt_factory(groups)
    loader = dm.train_dataloader()
    epochs = cfg.trainer.max_epochs
    scheduler = MultiplierLR(optimizer, instantiate(cfg.scheduler), epochs * len(loader))
    module.train()  # the module's BatchNorm policy, as in a transferlab run
    return plain_loop(
        model,
        loader,
        optimizer,
        module.mean,
        module.std,
        epochs,
        scheduler=scheduler,
        clip=cfg.trainer.gradient_clip_val,
        label_smoothing=cfg.loss.label_smoothing,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
    )


def run(work: Path, quick: bool = False, reps: int = 3) -> dict:
    """Interleave ``reps`` plain and transferlab runs; ratio of the median step times."""
    overrides = QUICK if quick else FULL
    plain, framework = [], []
    for rep in range(reps):
        plain += plain_steps(overrides, work / f"plain_{rep}")
        framework += transferlab_steps(overrides, work / f"transferlab_{rep}")
    return {
        "config": " ".join(overrides),
        "reps": reps,
        "steps_per_arm": len(plain),
        "plain_median_step_s": median(plain),
        "transferlab_median_step_s": median(framework),
        "ratio": ratio(median(framework), median(plain)),
        "goal": "<= 1.03",
    }
