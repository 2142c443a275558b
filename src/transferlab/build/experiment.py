"""A whole training run built from its config: datamodule, module, the data to fit on (images or
cached features), callbacks, loggers and the trainer, held in one :class:`Experiment`."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from transferlab.build.checkpoint import read_checkpoint, source_fisher
from transferlab.build.parts import (
    build_augmentation,
    build_datamodule,
    build_module,
    check_number,
)
from transferlab.cache import DeferredCheckpointIO, FeatureCache, FeatureData, use_cache
from transferlab.callbacks import DivergenceGuard, InterruptHint, skip_inherited_batch_hooks
from transferlab.data import ImageDataModule
from transferlab.domain import ORACLE_MONITOR
from transferlab.errors import ConfigError
from transferlab.files import FileCheckpointIO
from transferlab.module import TransferModule
from transferlab.speed import apply_speed_settings, keep_freed_memory, skip_needless_log_moves
from transferlab.strategies import Unfreezer

log = logging.getLogger("transferlab")


@dataclass
class Experiment:
    """Everything one run needs, built and checked before anything is written.

    Attributes:
        config: the resolved config as plain data (saved as ``config.yaml``, in checkpoints and
            sent to the loggers).
        out: the run dir.
        datamodule: the image data (set up).
        module: the LightningModule.
        fit_data: what the trainer fits on: ``datamodule``, or cached backbone features.
        trainer: the Lightning trainer, with callbacks and loggers.
        loggers: the experiment loggers (also inside ``trainer``), to finish at the end.
        ckpt_path: the checkpoint to resume from, or None.
        resume_point: (last finished epoch, global step) of that checkpoint.
        export_backbone, export_fisher: files to write the trained backbone / its Fisher to.
    """

    config: dict
    out: Path
    datamodule: ImageDataModule
    module: TransferModule
    fit_data: pl.LightningDataModule
    trainer: pl.Trainer
    loggers: list = field(default_factory=list)
    ckpt_path: str | None = None
    resume_point: tuple[int, int] | None = None
    export_backbone: Path | None = None
    export_fisher: Path | None = None

    @property
    def features(self) -> FeatureCache | None:
        """The feature cache when the head trains on cached features."""
        return getattr(self.fit_data, "features", None)


def build_experiment(cfg: DictConfig) -> Experiment:
    """Seed, then build every part of a training run from ``cfg``; writes nothing."""
    check_number(cfg.seed, "seed", whole=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if (cfg.get("speed") or {}).get("keep_freed_memory"):
        keep_freed_memory()  # before the data and model allocate
    resume_point = None
    if cfg.get("ckpt_path"):  # a missing or unreadable resume file fails now, not mid-fit
        saved = read_checkpoint(cfg.ckpt_path)
        resume_point = (int(saved.get("epoch", 0)), int(saved.get("global_step", 0)))
    augmentation = build_augmentation(cfg)
    dm = build_datamodule(cfg, augmentation=augmentation)
    dm.setup()
    if dm.task_type == "regression":
        regression_monitor(cfg)
    elif dm.num_classes < 2:
        raise ConfigError(
            f"This data has {dm.num_classes} class; a classifier needs at least 2 (set "
            "data.num_classes >= 2, or give the image folder one sub-folder per class)."
        )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    module = build_module(
        cfg,
        dm.num_classes,
        dm.channels,
        *dm.normalization,
        extra=stored_extra(resolved, dm),
        augmentation=augmentation,
        fisher_provider=source_fisher,
        task=dm.task_type,
        target_normalization=getattr(dm, "target_normalization", None),
    )
    apply_speed_settings(resolved.get("speed"), module, dm)
    cached = use_cache(module.strategy.cache_features, module, dm)
    fit_data = dm
    if cached:
        writable_dir(cache_dir(cfg), "paths.cache_dir")
        cache = FeatureCache(resolved["backbone"], resolved["data"], module, dm, cache_dir(cfg))
        module.accept_features()
        fit_data = FeatureData(cache, dm.batch_size, dm.seed, dm.drop_last)
    out = Path(cfg.paths.output_dir)
    for key in ("export_backbone", "export_fisher"):
        if cfg.get(key):  # checked before training, not after it
            writable_dir(Path(cfg[key]).parent, key)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = build_trainer(cfg, module, out, loggers, cached)
    return Experiment(
        config=resolved,
        out=out,
        datamodule=dm,
        module=module,
        fit_data=fit_data,
        trainer=trainer,
        loggers=loggers,
        ckpt_path=cfg.get("ckpt_path"),
        resume_point=resume_point,
        export_backbone=Path(cfg.export_backbone) if cfg.get("export_backbone") else None,
        export_fisher=Path(cfg.export_fisher) if cfg.get("export_fisher") else None,
    )


def regression_monitor(cfg: DictConfig) -> None:
    """A regression run has no accuracy: the default ``optimized_metric`` (val/acc) becomes
    val/r2, which ranks checkpoints as the validation MSE does (best checkpoint, sweepers)."""
    if cfg.get("optimized_metric", "val/acc") == "val/acc":
        with open_dict(cfg):
            cfg.optimized_metric = "val/r2"
        log.info("regression target: checkpoints and sweeps follow val/r2")


def stored_extra(resolved: dict, dm) -> dict:
    """What a run's checkpoints store beside the weights: its resolved config and its data's
    class names, channels and task (evaluation, export and predict rebuild the model from it)."""
    return {
        "config": resolved,
        "class_names": dm.class_names,
        "in_chans": dm.channels,
        "task": dm.task_type,
    }


def cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache_dir) / "features"


def writable_dir(path: Path, key: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-")
        probe.close()
    except OSError as e:
        raise ConfigError(
            f"Cannot write to {path} ({e.strerror or type(e).__name__}), which {key} needs; "
            f"point {key} at a writable location."
        ) from e
    return path


def check_epochs(trainer_cfg: DictConfig) -> None:
    """Refuse a run that trains nothing (0 epochs) or never ends (-1 without max_steps)."""
    epochs, steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps", -1)
    if epochs is None and steps and steps > 0:
        return
    check_number(epochs, "trainer.max_epochs", whole=True)
    if epochs == 0 or epochs < -1:
        raise ConfigError(
            f"trainer.max_epochs={epochs} trains nothing; set it to 1 or more (to score a "
            "saved checkpoint without training, use transferlab-eval ckpt_path=...)."
        )
    if epochs == -1 and not (steps and steps > 0):
        raise ConfigError(
            "trainer.max_epochs=-1 never ends (and the LR schedule needs a length); set "
            "trainer.max_epochs to a number of epochs, or trainer.max_steps."
        )


def build_callbacks(cfg: DictConfig, module: TransferModule, out: Path, loggers: list) -> list:
    """The ``callbacks=`` choice, the strategy's unfreezing and the domain oracle's checkpoint."""
    # first, so a diverged step is caught before any checkpoint callback saves the model
    callbacks = [DivergenceGuard(), InterruptHint(out / "checkpoints" / "last.ckpt")]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if module.strategy.unfreeze is not None:
        callbacks.append(Unfreezer(module.strategy.unfreeze))
    if getattr(module, "oracle", False):
        callbacks.append(
            ModelCheckpoint(
                dirpath=out / "checkpoints",
                filename="oracle",
                monitor=ORACLE_MONITOR,
                mode="max",
                auto_insert_metric_name=False,
            )
        )
    if not loggers:  # nothing to log LRs to; lr_per_group.png still records them
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_trainer(
    cfg: DictConfig, module: TransferModule, out: Path, loggers: list, cached: bool
) -> pl.Trainer:
    if not cfg.trainer.get("fast_dev_run"):
        check_epochs(cfg.trainer)
    extra = cpu_fallbacks(cfg.trainer)
    skip_needless_log_moves()
    if not cfg.trainer.get("plugins"):
        # cached: after the feature pass the module never calls its backbone, its weights stay
        # fixed, and the checkpoints are written once, at the end
        io = DeferredCheckpointIO(fixed_prefix="backbone.") if cached else FileCheckpointIO()
        extra["plugins"] = [io]
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, module, out, loggers),
        logger=loggers or False,
        **extra,
    )
    skip_inherited_batch_hooks(trainer.callbacks)  # the trainer's own ones (progress bar) too
    return trainer


def cpu_fallbacks(trainer_cfg: DictConfig) -> dict:
    """Trainer settings that only GPUs support, switched off (with a note) on a CPU run."""
    on_cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    if on_cpu and trainer_cfg.get("sync_batchnorm"):
        log.info("sync_batchnorm needs GPUs; this CPU run keeps per-process BatchNorm statistics")
        return {"sync_batchnorm": False}
    return {}
