"""Models rebuilt from a transferlab checkpoint: the stored config gives the architecture, the
state dict the weights. Used by evaluation, EWC's Fisher estimate and (later) export."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.build.parts import TEXT_BACKBONE, build_datamodule, build_module
from transferlab.config import CONF_DIR
from transferlab.errors import ConfigError
from transferlab.module import TransferModule


def read_checkpoint(path: str) -> dict:
    """The checkpoint's contents, loaded as plain tensors and data (never as code)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"Checkpoint '{path}' does not exist; pass ckpt_path=<run dir>/checkpoints/best.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and EOF errors of empty, truncated or foreign files
        raise ConfigError(
            f"Checkpoint '{path}' cannot be read as plain tensors and data ({type(e).__name__}): "
            "it is empty, truncated, not a checkpoint, or holds code; pass a .ckpt written by "
            "transferlab-train."
        ) from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("transferlab"), dict):
        raise ConfigError(
            f"'{path}' is not a transferlab checkpoint; pass one written by transferlab-train."
        )
    return ckpt


# the config groups a model (and its data) is rebuilt from
BUILT_FROM_CHECKPOINT = (
    "backbone",
    "head",
    "strategy",
    "optimizer",
    "scheduler",
    "loss",
    "data",
    "augmentation",
    "domain_adaptation",
    "regularization",
)
# constructors that moved, so checkpoints written before the move still load
MOVED_TARGETS = {"transferlab.domain.DANNAnnealing": "transferlab.schedules.DANNAnnealing"}


def upgraded(config: dict) -> dict:
    """A stored config brought up to this version: moved constructors renamed, settings that
    no longer exist (``strategy.name``) dropped."""
    text = repr(config)
    for old, new in MOVED_TARGETS.items():
        text = text.replace(repr(old), repr(new))
    config = ast.literal_eval(text)
    strategy = config.get("strategy")
    if isinstance(strategy, dict):
        strategy.pop("name", None)
    return config


@lru_cache(maxsize=1)
def known_targets() -> frozenset[str]:
    """Every ``_target_`` the packaged config tree names: the only constructors a checkpoint's
    stored config may ask for."""
    found = set()
    for path in Path(CONF_DIR).rglob("*.yaml"):
        found.update(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.M))
    return frozenset(found)


def check_stored_targets(node, path: str, where: str) -> None:
    """Refuse a stored config that names a constructor outside the packaged config tree."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in known_targets():
            raise ConfigError(
                f"The config stored in '{where}' names _target_: {target} at {path or 'top'}, "
                "which is not one of transferlab's constructors; transferlab never runs code "
                "a checkpoint names, so pass a checkpoint written by transferlab-train."
            )
        for key, value in node.items():
            check_stored_targets(value, f"{path}.{key}" if path else str(key), where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_stored_targets(value, f"{path}[{i}]", where)


def load_module(path: str) -> tuple[TransferModule, DictConfig]:
    """(module with the checkpoint's weights, its training config), rebuilt without data."""
    ckpt = read_checkpoint(path)
    saved = ckpt["transferlab"]
    if not isinstance(saved.get("config"), dict) or "in_chans" not in saved:
        raise ConfigError(
            f"'{path}' holds no training config; pass a checkpoint written by transferlab-train."
        )
    config = upgraded(saved["config"])
    # only these parts are built from a stored config (never its trainer, loggers, callbacks)
    built = {k: v for k, v in config.items() if k in BUILT_FROM_CHECKPOINT}
    check_stored_targets(built, "", path)  # before anything is instantiated
    train_cfg = OmegaConf.create(config)
    channels = saved["in_chans"]
    module = build_module(
        train_cfg,
        len(saved["class_names"]),
        channels,
        [0.0] * channels,
        [1.0] * channels,
        extra=saved,
        for_training=False,
        task=saved.get("task", "classification"),
    )
    try:
        module.load_state_dict(ckpt["state_dict"])  # restores the training normalisation too
    except (KeyError, RuntimeError, TypeError) as e:
        raise ConfigError(
            f"The weights in '{path}' do not fit the model its stored config describes (written "
            "by another version of transferlab, or edited); re-train it with transferlab-train."
        ) from e
    return module, train_cfg


def require_image_model(module: TransferModule, command: str) -> None:
    """Refuse a text checkpoint in a command that handles image models only."""
    backbone = module.extra.get("config", {}).get("backbone", {})
    if backbone.get("_target_") == TEXT_BACKBONE:
        raise ConfigError(
            f"{command} handles image models, and this checkpoint holds a text encoder "
            f"({backbone.get('name')}); score it with transferlab-eval ckpt_path=... instead."
        )


def source_fisher(ckpt_path: str, num_samples: int) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of a saved source run's backbone, on the training data its config names
    (the Fisher provider of ``regularization=ewc`` with ``source_ckpt``)."""
    from transferlab.strategies import diagonal_fisher

    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"regularization.source_ckpt={ckpt_path} does not exist; point it at a source run's "
            "checkpoint (for example outputs/runs/<run>/checkpoints/best.ckpt)."
        )
    module, cfg = load_module(ckpt_path)
    dm = build_datamodule(cfg, train_augmentation=False)
    dm.setup()
    return diagonal_fisher(module, *dm.splits.train, num_samples=num_samples)


def check_data_fits(module: TransferModule, dm) -> None:
    """Refuse data whose classes or channels differ from what the checkpoint was trained on."""
    classes, channels = len(module.extra["class_names"]), module.extra["in_chans"]
    if dm.num_classes != classes:
        raise ConfigError(
            f"The checkpoint predicts {classes} classes but this data has {dm.num_classes}; "
            "evaluate on data with the same classes."
        )
    if dm.channels != channels:
        raise ConfigError(
            f"The checkpoint expects {channels}-channel images but this data has {dm.channels}; "
            f"set data.channels={channels} (image folders) or use matching data."
        )
