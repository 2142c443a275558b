"""Train one experiment: ``transferlab-train [hydra overrides]`` (= ``python -m transferlab.train``).

Composes the config, instantiates data, backbone, head, strategy, optimizer and trainer, fits,
evaluates the best checkpoint on val and test, and writes ``metrics.json`` in the run dir.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from transferlab import CONF_DIR
from transferlab.augment import pretrained_normalization
from transferlab.cache import DeferredCheckpointIO, cached_data, use_cache
from transferlab.data import ImageDataModule
from transferlab.domain import module_class_for, oracle_checkpoint, oracle_metrics
from transferlab.errors import config_error_in, exit_refused
from transferlab.loggers import finish_loggers
from transferlab.module import TransferModule
from transferlab.speed import apply_speed_settings
from transferlab.strategies import Unfreezer
from transferlab.sweep import refuse_ddp_relaunch, run_isolated

log = logging.getLogger("transferlab")


def build_datamodule(cfg: DictConfig, train_augmentation: bool = True) -> ImageDataModule:
    augmentation = instantiate(cfg.augmentation) if train_augmentation else None
    return instantiate(cfg.data, augmentation=augmentation)


def build_module(
    cfg: DictConfig,
    num_classes: int,
    in_chans: int,
    mean: list[float],
    std: list[float],
    extra: dict | None = None,
    for_training: bool = True,
) -> TransferModule:
    """Backbone + head + strategy + optimizer (+ regulariser) from the config; no data access.

    ``for_training=False`` builds the architecture only, for loading a checkpoint into: no
    pretrained weights are read and no regulariser is set up.
    """
    strategy = instantiate(cfg.strategy)
    overrides = {"in_chans": in_chans}
    if strategy.reinit or not for_training:
        overrides.update(pretrained=False, weights=None)
    backbone = instantiate(cfg.backbone, **overrides)
    head = instantiate(cfg.head, in_features=backbone.num_features, num_classes=num_classes)
    regularization = cfg.get("regularization") or {}
    regularizer = None
    if for_training and "_target_" in regularization:
        regularizer = instantiate(regularization)(backbone.model, head)
    batch_augment = None
    if for_training and cfg.get("augmentation"):
        augmentation = instantiate(cfg.augmentation)
        batch_augment = augmentation.batch_transform(num_classes, cfg.data.batch_size)
    if for_training and uses_pretrained_statistics(cfg, strategy):
        # hub weights expect their own input statistics, not those of this data
        pretrained = getattr(backbone.model, "pretrained_cfg", None) or {}
        mean, std = pretrained_normalization(pretrained, in_chans) or (mean, std)
    # a source/target data pair trains a DomainAdaptationModule (with domain_adaptation=none too)
    module_class, domain_kwargs = module_class_for(cfg, backbone.num_features)
    return module_class(
        backbone,
        head,
        num_classes,
        strategy,
        optimizer=instantiate(cfg.optimizer),
        schedule=instantiate(cfg.scheduler),
        label_smoothing=cfg.loss.label_smoothing,
        mean=mean,
        std=std,
        extra=extra,
        batch_augment=batch_augment,
        regularizer=regularizer,
        **domain_kwargs,
    )


def uses_pretrained_statistics(cfg: DictConfig, strategy) -> bool:
    """Hub-pretrained weights set the input mean/std unless the data config gives them."""
    return (
        bool(cfg.backbone.get("pretrained"))
        and not strategy.reinit
        and cfg.data.get("mean") is None
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment end to end and return its final metrics."""
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    if cfg.get("print_config"):
        log.info("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    extra = {"config": resolved, "class_names": dm.class_names, "in_chans": dm.channels}
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization, extra=extra)
    apply_speed_settings(cfg.get("speed"), module, dm)
    cached = use_cache(module.strategy.cache_features, module, dm)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if module.strategy.unfreeze is not None:
        callbacks.append(Unfreezer(module.strategy.unfreeze))
    callbacks += oracle_checkpoint(module, out / "checkpoints")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    for lg in loggers:
        lg.log_hyperparams(resolved)
    if not loggers:  # nothing to log LRs to; lr_per_group.png still records them
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    extra_trainer_args = cpu_fallbacks(cfg.trainer)
    if cached and not cfg.trainer.get("plugins"):
        extra_trainer_args["plugins"] = [DeferredCheckpointIO()]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra_trainer_args
    )
    try:
        refuse_ddp_relaunch(trainer)
        fit_data = cached_data(cfg, module, dm) if cached else dm
        metrics, best = fit_and_evaluate(trainer, module, fit_data, cfg.get("ckpt_path"))
    finally:
        finish_loggers(loggers)
    if cached:
        metrics["time/feature_pass_s"] = round(fit_data.features.seconds, 2)
    metrics["time/wall_s"] = round(time.perf_counter() - start, 2)
    if trainer.is_global_zero:
        write_outputs(cfg, module, metrics, out, best)
        if cfg.get("export_fisher"):
            export_fisher(module, dm, Path(cfg.export_fisher))
    return metrics


def cpu_fallbacks(trainer_cfg: DictConfig) -> dict:
    """Trainer settings that only GPUs support, switched off (with a note) on a CPU run."""
    import torch

    on_cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    if on_cpu and trainer_cfg.get("sync_batchnorm"):
        log.info("sync_batchnorm needs GPUs; this CPU run keeps per-process BatchNorm statistics")
        return {"sync_batchnorm": False}
    return {}


def fit_and_evaluate(trainer: pl.Trainer, module: TransferModule, dm, ckpt_path: str | None):
    """Fit, then score the best checkpoint on val and test; returns (metrics, best ckpt path)."""
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics.update(oracle_metrics(trainer, module, dm))  # before "best": the module ends on it
    for stage in (trainer.validate, trainer.test):
        for results in stage(module, datamodule=dm, ckpt_path=best or None, verbose=False):
            metrics.update({k: float(v) for k, v in results.items()})
    rows = module.parameter_report()
    metrics["params/trainable"] = float(sum(r["trainable"] for r in rows))
    metrics["params/total"] = float(sum(r["params"] for r in rows))
    return dict(sorted(metrics.items())), best


def write_outputs(cfg: DictConfig, module: TransferModule, metrics: dict, out: Path, best: str):
    from transferlab.plots import save_confusion_matrix

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if module.confusion_matrix is not None:
        save_confusion_matrix(
            module.confusion_matrix, module.extra["class_names"], out / "confusion_matrix.png"
        )
    if cfg.get("export_backbone"):
        from safetensors.torch import save_file

        path = Path(cfg.export_backbone)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in module.backbone.model.state_dict().items()}
        save_file(state, path)
        log.info("backbone weights exported to %s", path)
    print_summary(metrics, out, best)


def export_fisher(module: TransferModule, dm: ImageDataModule, path: Path) -> None:
    """Save the backbone's diagonal Fisher on the training data, for ``regularization=ewc``."""
    from safetensors.torch import save_file

    from transferlab.strategies import diagonal_fisher

    fisher = diagonal_fisher(module, *dm.splits.train)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in fisher.items()}, path)
    log.info("backbone Fisher (for regularization=ewc) written to %s", path)


def print_summary(metrics: dict, out: Path, best: str) -> None:
    """Key metrics, trainable parameters, wall time and where the run is (console and log)."""
    names = ("val/acc", "test/acc", "test/f1", "test/auroc", "test_source/acc", "oracle/test/acc")
    keys = [k for k in names if k in metrics]
    lines = [f"  {k:<18}{metrics[k]:.4f}" for k in keys]
    lines.append(
        f"  {'trainable params':<18}{int(metrics['params/trainable']):,} of {int(metrics['params/total']):,}"
    )
    lines.append(f"  {'wall time':<18}{metrics['time/wall_s']:.1f} s")
    lines.append(f"  {'run dir':<18}{out}")
    if best:
        lines.append(f"  {'best checkpoint':<18}{best}")
    log.info("transferlab summary\n%s", "\n".join(lines))


def run_or_explain(fn, cfg: DictConfig):
    """Run ``fn(cfg)``; a :class:`ConfigError` becomes one line on stderr and exit status 2."""
    try:
        return fn(cfg)
    except Exception as e:
        cause = config_error_in(e)
        if cause is None:
            raise
        discard_refused_run_dir()
        exit_refused(cause)


def discard_refused_run_dir() -> None:
    """Remove the run dir of a refused run when it holds only what Hydra wrote for it (its
    ``.hydra/`` copy of the config and the log); a dir with anything else is left alone."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = HydraConfig.get().runtime.get("output_dir")
    if not out or not Path(out).is_dir():
        return
    entries = list(Path(out).iterdir())
    if all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
        shutil.rmtree(out)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    # inside a -m sweep a failing job is recorded in its dir and the sweep goes on
    metrics = run_or_explain(lambda c: run_isolated(train, c), cfg)
    if metrics is None:
        return float("nan")  # Optuna marks the trial failed; the report lists it
    return metrics.get(cfg.get("optimized_metric") or "val/acc")


if __name__ == "__main__":
    main()
