"""(a) Framework overhead: training-step times of ``transferlab-train`` against a plain PyTorch
loop over the same model, data, optimizer, schedule and clipping, in two measures.

1. The ratio of median step times on the default experiment's model (ResNet-18, 32 px, batch
   64), with a 95% interval and the ratio of each pair of epochs.
2. The framework's own time per step: the same comparison on a model so small that its forward,
   backward and optimizer step take little time; the difference of the medians (ms per step)
   is what the framework adds around them (hooks, metrics, logging, schedule). It is measured
   twice: on the wall clock, and on the process's CPU time, which leaves out the moments a
   shared machine makes the process wait for a core (``python -m benchmarks.profile_steps``
   says where the time goes).

Both arms run in one process, **step by step**: a callback in the ``transferlab-train`` run
(:class:`PlainSteps`) runs one step of the plain loop, on its own copy of the model and data,
before each of the run's training steps (P T P T ...). The run's step is the time from the end
of one plain step to the start of the next: everything Lightning and the module do for a step,
the next batch's fetch included. Neighbouring steps of the two arms are milliseconds apart and
see the same load, so a machine's drift cancels within each epoch; pairs of whole epochs
(seconds apart) left a spread of ±10% per pair even on a quiet machine, and separate runs a
minute apart ±20%. The interval resamples epochs. Left out: the plain loop's first step of
each epoch (its loader starting), the run's last one (it runs into the epoch's end:
validation, checkpoints) and each arm's first epoch (warm-up).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.common import PlainStep, compose_cfg, median, plain_loop, quiet, sync
from benchmarks.stats import paired_bootstrap_ci, per_run_ratios
from transferlab.build import build_datamodule, build_module
from transferlab.optim import MultiplierLR, build_param_groups
from transferlab.speed import read_clock
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
    "trainer.max_epochs=27",
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
    "trainer.max_epochs=12",
    *UNTIMED,
]
QUICK = [
    "data=synthetic",
    "backbone=tiny",
    "backbone.weights=null",
    "trainer.max_epochs=3",
    *UNTIMED,
]
TIMER = [
    "+callbacks.step_timer._target_=transferlab.speed.StepTimer",
    "+callbacks.step_timer.path=${paths.output_dir}/step_times.json",
]
PAIRED = ["+callbacks.plain._target_=benchmarks.overhead.PlainSteps"]
# both arms timed by the process's CPU time: a shared machine's waits for a core left out
CPU_CLOCK = ["+callbacks.plain.clock=cpu"]


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
    loop = plain_parts(cfg, autocast_dtype, channels_last)
    return plain_loop(**loop, epochs=cfg.trainer.max_epochs)


def plain_parts(
    cfg, autocast_dtype: torch.dtype | None = None, channels_last: bool = False
) -> dict:
    """The keyword arguments of :func:`plain_loop` (but ``epochs``) for the run ``cfg``
    describes: its model, loader, param groups, optimizer, schedule, clipping, normalisation."""
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
    return dict(
        model=model,
        loader=loader,
        optimizer=optimizer,
        mean=module.mean,
        std=module.std,
        scheduler=scheduler,
        clip=cfg.trainer.gradient_clip_val,
        label_smoothing=cfg.loss.label_smoothing,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
    )


class PlainSteps(pl.Callback):
    """Runs one step of the plain loop before each training step of the run it is part of, and
    times both arms step by step (see the module's docstring). The plain loop trains its own
    model, built from the run's resolved config (stored in the module), so the two arms never
    share weights. Writes ``paired_steps.json``: per epoch, each arm's step times."""

    def __init__(self, clock: str = "wall"):
        self.clock = clock
        self.step: PlainStep | None = None
        self.loader = self.batches = self.mark = None
        self.framework: list[list[float]] = []
        self.plain: list[list[float]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        cfg = OmegaConf.create(pl_module.extra["config"])
        with torch.random.fork_rng(), quiet():  # the run's own random stream stays untouched
            torch.manual_seed(cfg.seed)
            parts = plain_parts(cfg)
        self.loader = parts.pop("loader")
        self.step = PlainStep(**parts)
        self.step.model.train()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batches, self.mark = iter(self.loader), None
        self.framework.append([])
        self.plain.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        sync(self.step.device)
        start = read_clock(self.clock)
        if self.mark is not None:  # the run's previous step, ended by this hook
            self.framework[-1].append(start - self.mark)
        x, y = next(self.batches)
        self.step(x, y)
        sync(self.step.device)
        self.mark = read_clock(self.clock)
        if batch_idx > 0:  # as for the run, the epoch's first step is left out
            self.plain[-1].append(self.mark - start)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.mark = None  # the step across the epoch's end is not the run's step
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir, "paired_steps.json")
            path.write_text(json.dumps({"framework": self.framework, "plain": self.plain}) + "\n")


def paired_epochs(overrides: list[str], run_dir: Path, clock: str = "wall") -> tuple[list, list]:
    """(transferlab steps, plain steps) per epoch of one paired run, warm-up epoch left out."""
    cfg = compose_cfg([*overrides, *PAIRED, *(CPU_CLOCK if clock == "cpu" else [])], run_dir)
    with quiet():
        train(cfg)
    return read_paired(run_dir)


def read_paired(run_dir: Path) -> tuple[list, list]:
    paired = json.loads((run_dir / "paired_steps.json").read_text())
    return paired["framework"][1:], paired["plain"][1:]


class BareLightning(pl.LightningModule):
    """Lightning's training loop alone, around the plain loop's own parts (its model, param
    groups, optimizer, per-step schedule and normalisation; clipping by the Trainer's
    ``gradient_clip_val``): no callbacks, loggers, metrics, checkpoints or progress bar. What
    its steps add to the plain loop's is the floor of any module trained by Lightning's loop
    with automatic optimization."""

    def __init__(self, parts: dict, config: dict):
        super().__init__()
        self.model = parts["model"]
        self.norm = (parts["mean"], parts["std"])
        self.optimizer, self.scheduler = parts["optimizer"], parts["scheduler"]
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=parts["label_smoothing"])
        self.extra = {"config": config}  # PlainSteps builds the paired plain loop from it

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        mean, std = self.norm
        return self.criterion(self.model((x.float() / 255 - mean) / std), y)

    def configure_optimizers(self):
        schedule = {"scheduler": self.scheduler, "interval": "step"}
        return {"optimizer": self.optimizer, "lr_scheduler": schedule}


def lightning_epochs(overrides: list[str], run_dir: Path, clock: str = "wall") -> tuple[list, list]:
    """(bare Lightning steps, plain steps) per epoch, paired the same way as
    :func:`paired_epochs`, warm-up epoch left out."""
    cfg = compose_cfg(overrides, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = plain_parts(cfg)
    module = BareLightning(parts, OmegaConf.to_container(cfg, resolve=True))
    run_dir.mkdir(parents=True, exist_ok=True)
    with quiet():
        trainer = pl.Trainer(
            max_epochs=cfg.trainer.max_epochs,
            gradient_clip_val=parts["clip"],
            callbacks=[PlainSteps(clock)],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            devices=1,
            default_root_dir=run_dir,
        )
        trainer.fit(module, train_dataloaders=parts["loader"])
    return read_paired(run_dir)


def measure(
    overrides: list[str], run_dir: Path, statistic: str, clock: str = "wall", paired=paired_epochs
) -> dict:
    load = os.getloadavg()[0]
    framework, plain = paired(overrides, run_dir, clock)
    ci = paired_bootstrap_ci(framework, plain, statistic)
    return {
        "config": " ".join(overrides),
        "clock": clock,
        "epoch_pairs": len(plain),
        "steps_per_arm": sum(map(len, plain)),
        "load_avg_1min": {"start": load, "end": os.getloadavg()[0]},
        "plain_median_step_s": median([t for e in plain for t in e]),
        "transferlab_median_step_s": median([t for e in framework for t in e]),
        "ci": ci,
        "per_pair": per_run_ratios(framework, plain),
    }


def run(work: Path, quick: bool = False) -> dict:
    """Both measures: the step-time ratio on the default model, the own time per step."""
    model, noop = (QUICK, QUICK) if quick else (FULL, NOOP)
    out = measure(model, work / "model", "ratio")
    out.update(ratio=out["ci"]["value"], ratio_ci=[out["ci"]["ci_low"], out["ci"]["ci_high"]])
    out["goal"] = "95% CI of the ratio within [0.97, 1.03]; own time <= 1 ms/step"
    out["own_time"] = own_time(noop, work / "noop")
    return out


def own_time(overrides: list[str], run_dir: Path) -> dict:
    """The framework's own time per step (ms): the paired difference of median step times,
    on the wall clock (``own_ms``) and, in a second paired run, on the process's CPU time
    (``own_cpu_ms``): on a shared machine a process waits for a core at random moments, which
    the wall clock counts and the CPU clock does not. A third paired run times Lightning's loop
    alone (:class:`BareLightning`, wall clock, ``lightning_ms``): the part of the own time no
    module on that loop can remove."""
    own = measure(overrides, run_dir / "wall", "difference")
    own.update(in_ms("own_ms", own))
    own["cpu"] = measure(overrides, run_dir / "cpu", "difference", clock="cpu")
    own.update(in_ms("own_cpu_ms", own["cpu"]))
    own["lightning"] = measure(
        overrides, run_dir / "lightning", "difference", paired=lightning_epochs
    )
    own.update(in_ms("lightning_ms", own["lightning"]))
    return own


def in_ms(key: str, measured: dict) -> dict:
    """``{key: difference in ms, key + "_ci": its interval in ms}`` of a :func:`measure` result."""
    ci = measured["ci"]
    return {key: 1000 * ci["value"], f"{key}_ci": [1000 * ci["ci_low"], 1000 * ci["ci_high"]]}


def run_own(work: Path, quick: bool = False) -> dict:
    """The second measure alone (``--parts own_time``): about a minute here."""
    return own_time(QUICK if quick else NOOP, work / "noop")
