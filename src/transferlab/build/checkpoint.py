"""Models rebuilt from a transferlab checkpoint: the stored config gives the architecture, the
state dict the weights. Used by evaluation, EWC's Fisher estimate and (later) export."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.build.parts import build_datamodule, build_module
from transferlab.errors import ConfigError
from transferlab.module import TransferModule


def read_checkpoint(path: str) -> dict:
    """The checkpoint's contents, loaded as plain tensors and data (never as code)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"Checkpoint '{path}' does not exist; pass ckpt_path=<run dir>/checkpoints/best.ckpt."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "transferlab" not in ckpt:
        raise ConfigError(
            f"'{path}' is not a transferlab checkpoint; pass one written by transferlab-train."
        )
    return ckpt


def load_module(path: str) -> tuple[TransferModule, DictConfig]:
    """(module with the checkpoint's weights, its training config), rebuilt without data."""
    ckpt = read_checkpoint(path)
    saved = ckpt["transferlab"]
    train_cfg = OmegaConf.create(saved["config"])
    channels = saved["in_chans"]
    module = build_module(
        train_cfg,
        len(saved["class_names"]),
        channels,
        [0.0] * channels,
        [1.0] * channels,
        extra=saved,
        for_training=False,
    )
    module.load_state_dict(ckpt["state_dict"])  # restores the training normalisation too
    return module, train_cfg


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
