"""Evaluate a checkpoint: ``transferlab-eval ckpt_path=FILE [data=...]`` writes metrics.json.

The model is rebuilt from the resolved config stored in the checkpoint, so no training config is
needed; without ``data=...`` the checkpoint's own data config is used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from transferlab.build import build_datamodule, check_data_fits, load_module
from transferlab.config import CONF_DIR
from transferlab.errors import run_or_explain
from transferlab.files import write_json

log = logging.getLogger("transferlab")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    module, train_cfg = load_module(cfg.ckpt_path)
    pl.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg if cfg.get("data") is not None else train_cfg, False)
    dm.setup()
    check_data_fits(module, dm)
    trainer: pl.Trainer = instantiate(cfg.trainer)
    # one dict per test loader (a source/target pair has two: test/… and test_source/…)
    results = trainer.test(module, datamodule=dm, verbose=True)
    metrics = {k: float(v) for r in results for k, v in sorted(r.items())}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    log.info("metrics written to %s", out / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_or_explain(evaluate, cfg)


if __name__ == "__main__":
    main()
