"""Evaluate a checkpoint: ``transferlab-eval ckpt_path=FILE [data=...]`` writes metrics.json and
reliability_diagram.png.

The model is rebuilt from the resolved config stored in the checkpoint, so no training config is
needed; without ``data=...`` the checkpoint's own data config is used. Validation and test
metrics include the expected calibration error (``val/ece``, ``test/ece``); with
``eval.calibrate=temperature`` a softmax temperature is fitted on the validation logits and the
ECE after it is reported too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from transferlab.build import build_datamodule, check_data_fits, load_module
from transferlab.calibration import temperature_scaling
from transferlab.config import CONF_DIR
from transferlab.errors import ConfigError, run_or_explain
from transferlab.export.inference import evaluation_logits
from transferlab.files import write_json
from transferlab.outputs import write_reliability_diagram

log = logging.getLogger("transferlab")
CALIBRATIONS = ("none", "temperature")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    calibrate = cfg.get("eval", {}).get("calibrate", "none")
    if calibrate not in CALIBRATIONS:
        raise ConfigError(
            f"eval.calibrate={calibrate} is unknown; use eval.calibrate=none or temperature."
        )
    module, train_cfg = load_module(cfg.ckpt_path)
    pl.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg if cfg.get("data") is not None else train_cfg, False)
    dm.setup()
    check_data_fits(module, dm)
    trainer: pl.Trainer = instantiate(cfg.trainer)
    # one dict per loader (a source/target pair has two: test/… and test_source/…)
    results = trainer.validate(module, datamodule=dm, verbose=False)
    results += trainer.test(module, datamodule=dm, verbose=True)
    metrics = {k: float(v) for r in results for k, v in r.items()}
    curves = {"test": module.reliability}
    if calibrate == "temperature":
        # the loaders test/… was scored on: a pair's "test" is the target's test set
        val, test = (evaluation_logits(module, dm, split) for split in ("val", "test"))
        if len(val[1]) == 0:
            raise ConfigError(
                "eval.calibrate=temperature fits on the validation split, which is empty for "
                "this data; use eval.calibrate=none or data with validation images."
            )
        extra, scaled = temperature_scaling(val, test)
        metrics.update(extra)
        curves.update(scaled)
        log.info(
            "temperature %.4f: test ECE %.4f -> %.4f",
            extra["calibration/temperature"],
            metrics.get("test/ece", float("nan")),
            extra["test/ece_temperature"],
        )
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(sorted(metrics.items()))
    write_json(out / "metrics.json", metrics)
    write_reliability_diagram(curves, out)
    log.info("metrics and reliability diagram written to %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_or_explain(evaluate, cfg)


if __name__ == "__main__":
    main()
