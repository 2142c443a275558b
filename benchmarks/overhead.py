"""(a) Framework overhead: training-step times of ``transferlab-train`` against a plain PyTorch
loop over the same model, data, optimizer, schedule and clipping, in two measures.

1. The ratio of median step times on the default experiment's model (ResNet-18, 32 px, batch
   64), with a block-bootstrap 95% interval and the ratio of each interleaved repetition.
2. The framework's own time per step: the same comparison on a model so small that its forward,
   backward and optimizer step take little time; the difference of the medians (ms per step)
   is what the framework adds around them (hooks, metrics, logging, schedule).

The arms alternate A B B A A B ..., so a drift of the machine's load favours neither; the
first ``WARMUP`` counted steps of every run are left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from benchmarks.common import compose_cfg, median, plain_loop, quiet
from benchmarks.stats import bootstrap_ci, per_run_ratios
from transferlab.build import build_datamodule, build_module
from transferlab.optim import MultiplierLR, build_param_groups
from transferlab.train import train

# validation and test are not timed: one batch each keeps the runs short
UNTIMED = ["+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]
# the default experiment's model and batch; 128 images per class = 10 batches an epoch
FULL = [
    "data=mnist_split",
    "data.n_per_class=128",
    "backbone=resnet18",
    "backbone.weights=null",
    "strategy=full",
    "trainer.max_epochs=7",
    *UNTIMED,
]
# a model whose own work is a small part of a step: timm's test_resnet on 16 px images
NOOP = [
    "data=synthetic",
    "data.num_samples=2048",
    "data.size=16",
    "data.image_size=16",
    "data.batch_size=32",
    "backbone=tiny",
    "backbone.weights=null",
    "strategy=full",
    "trainer.max_epochs=3",
    *UNTIMED,
]
QUICK = [
    "data=synthetic",
    "backbone=tiny",
    "backbone.weights=null",
    "trainer.max_epochs=2",
    *UNTIMED,
]
WARMUP = 5  # counted steps left out at the start of every run (allocator, caches)
REPS = 4
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


def interleaved(overrides: list[str], work: Path, reps: int) -> tuple[list, list, list]:
    """(plain runs, transferlab runs, load averages): ``reps`` runs of each arm, alternating."""
    plain, framework, loads = [], [], []
    for rep in range(reps):
        arms = [(plain, plain_steps, "plain"), (framework, transferlab_steps, "transferlab")]
        for runs, measure, name in arms[::-1] if rep % 2 else arms:
            loads.append(os.getloadavg()[0])
            runs.append(measure(overrides, work / f"{name}_{rep}")[WARMUP:])
    return plain, framework, loads


def summary(plain: list, framework: list, loads: list, overrides: list[str]) -> dict:
    return {
        "config": " ".join(overrides),
        "reps": len(plain),
        "steps_per_arm": sum(map(len, plain)),
        "load_avg_1min": {"min": min(loads), "max": max(loads)},
        "plain_median_step_s": median([t for r in plain for t in r]),
        "transferlab_median_step_s": median([t for r in framework for t in r]),
    }


def run(work: Path, quick: bool = False, reps: int = REPS) -> dict:
    """Both measures: the step-time ratio on the default model, the own time per step."""
    model, noop = (QUICK, QUICK) if quick else (FULL, NOOP)
    reps = 2 if quick else reps
    plain, framework, loads = interleaved(model, work / "model", reps)
    out = summary(plain, framework, loads, model)
    ci = bootstrap_ci(framework, plain, "ratio")
    out.update(ratio=ci["value"], ratio_ci=[ci["ci_low"], ci["ci_high"]])
    out["per_rep"] = per_run_ratios(framework, plain)
    out["goal"] = "95% CI of the ratio within [0.97, 1.03]; own time <= 1 ms/step"
    plain, framework, loads = interleaved(noop, work / "noop", reps)
    own = summary(plain, framework, loads, noop)
    ci = bootstrap_ci(framework, plain, "difference")
    own.update(own_ms=1000 * ci["value"], own_ms_ci=[1000 * ci["ci_low"], 1000 * ci["ci_high"]])
    out["own_time"] = own
    return out
