"""Evaluate a checkpoint: ``transferlab-eval ckpt_path=FILE [data=...]`` writes metrics.json.

The model is rebuilt from the resolved config stored in the checkpoint, so no training config is
needed; without ``data=...`` the checkpoint's own data config is used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transferlab import CONF_DIR
from transferlab.errors import ConfigError
from transferlab.train import build_module, run_or_explain

log = logging.getLogger("transferlab")


def read_checkpoint(path: str) -> dict:
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


def load_module(path: str):
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


def evaluate(cfg: DictConfig) -> dict[str, float]:
    module, train_cfg = load_module(cfg.ckpt_path)
    data_cfg = cfg.data if cfg.get("data") is not None else train_cfg.data
    pl.seed_everything(cfg.seed, verbose=False)
    dm = instantiate(data_cfg, augmentation=None)
    dm.setup()
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
    trainer: pl.Trainer = instantiate(cfg.trainer)
    # one dict per test loader (a source/target pair has two: test/… and test_source/…)
    results = trainer.test(module, datamodule=dm, verbose=True)
    metrics = {k: float(v) for r in results for k, v in sorted(r.items())}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("metrics written to %s", out / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_or_explain(evaluate, cfg)


if __name__ == "__main__":
    main()
