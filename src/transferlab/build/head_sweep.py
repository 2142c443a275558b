"""A head sweep's parts (``hydra/launcher=heads``): the checks that its jobs train heads only, on
one frozen backbone over one data set, the shared backbone and features, and each job's module."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.build.experiment import Experiment, build_experiment, stored_extra
from transferlab.build.parts import build_module, is_domain_pair
from transferlab.cache import FeatureData, why_not_cacheable
from transferlab.errors import ConfigError
from transferlab.module import TransferModule

# what a head sweep may vary between jobs: everything the head's training reads
HEAD_KEYS = ("optimizer", "head", "loss", "scheduler", "trainer.max_epochs")
# trainer settings the head loop reproduces; any other one changes training in ways it does not
TRAINER_KEYS = {
    "_target_",
    "accelerator",
    "devices",
    "max_epochs",
    "precision",
    "gradient_clip_val",
    "log_every_n_steps",
    "deterministic",
    "enable_model_summary",
    "enable_progress_bar",
    "default_root_dir",
}
# the default callbacks (callbacks/default.yaml): checkpoint choice and reports, no early stop
CALLBACKS = {"model_checkpoint", "last_checkpoint", "parameter_report", "lr_monitor", "lr_history"}
NOT_FOR_HEADS = "drop hydra/launcher=heads to run each job on its own"


def shared_part(cfg: DictConfig) -> dict:
    """The config without Hydra's node and the head keys: equal in every job of a head sweep."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    for key in HEAD_KEYS:
        *path, last = key.split(".")
        node = plain
        for part in path:
            node = node.get(part, {})
        node.pop(last, None)
    return plain


def first_difference(a, b, path: str = "") -> str | None:
    """The dotted key of the first place where two plain configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else path or "top"


def check_head_sweep(configs: list[DictConfig]) -> None:
    """Refuse a head sweep whose jobs differ in more than head settings, or whose settings the
    head loop would not reproduce (one sentence naming the key)."""
    first = shared_part(configs[0])
    for cfg in configs[1:]:
        key = first_difference(first, shared_part(cfg))
        if key:
            raise ConfigError(
                f"hydra/launcher=heads trains heads on one frozen backbone and one data set, but "
                f"the jobs differ in {key}; sweep only {', '.join(HEAD_KEYS)}, or {NOT_FOR_HEADS}."
            )
    for cfg in configs:
        check_head_settings(cfg)


def check_head_settings(cfg: DictConfig) -> None:
    plain = OmegaConf.to_container(cfg, resolve=False)  # Hydra's job values are not set yet
    trainer = plain.get("trainer") or {}
    epochs = trainer.get("max_epochs")
    unsupported = {
        f"trainer.{k}": k not in TRAINER_KEYS for k, v in trainer.items() if v is not None
    }
    unsupported |= {
        "trainer.precision": str(trainer.get("precision", "32-true")) not in ("32-true", "32"),
        "trainer.devices": trainer.get("devices", 1) not in (1, "1", "auto"),
        "data (a source/target pair)": is_domain_pair(cfg.data),
        "regularization": "_target_" in (plain.get("regularization") or {}),
        "ckpt_path": bool(plain.get("ckpt_path")),
        "export_backbone": bool(plain.get("export_backbone")),
        "export_fisher": bool(plain.get("export_fisher")),
        "logger (only logger=csv or none)": any(k != "csv" for k in plain.get("logger") or {}),
        "callbacks (only the defaults)": any(
            k not in CALLBACKS for k in plain.get("callbacks") or {}
        ),
        "trainer.max_epochs (a whole number >= 1)": not (
            isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1
        ),
    }
    for key, refused in unsupported.items():
        if refused:
            raise ConfigError(
                f"hydra/launcher=heads does not reproduce {key} in its head-training loop; "
                f"remove that setting, or {NOT_FOR_HEADS}."
            )


def head_device(cfg: DictConfig) -> torch.device:
    """Where the heads train: the device a run of this config would use."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def build_shared(cfg: DictConfig) -> Experiment:
    """The backbone, data and feature cache every job of the sweep trains its head over."""
    base = build_experiment(cfg)
    if base.features is None:
        reasons = why_not_cacheable(base.module, base.datamodule)
        why = reasons[0] if reasons else "strategy.cache_features=false"
        raise ConfigError(
            "hydra/launcher=heads trains heads on cached backbone features, but this run cannot "
            f"cache them: {why}; use strategy=feature_extraction, or {NOT_FOR_HEADS}."
        )
    base.module.to(head_device(cfg))
    return base


def build_head_job(cfg: DictConfig, base: Experiment) -> tuple[TransferModule, FeatureData]:
    """The job's module (its own head, optimizer, schedule and loss on the shared backbone) and
    the shared cached features batched as its run would batch them."""
    dm = base.datamodule
    module = build_module(
        cfg,
        dm.num_classes,
        dm.channels,
        *dm.normalization,
        extra=stored_extra(OmegaConf.to_container(cfg, resolve=True), dm),
        task=dm.task_type,
        backbone=base.module.backbone,
    )
    module.accept_features()
    module.to(base.module.mean.device)
    return module, FeatureData(base.features, dm.batch_size, dm.seed, dm.drop_last)
