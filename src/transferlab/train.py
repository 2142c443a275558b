"""Train one experiment: ``transferlab-train [hydra overrides]`` (= ``python -m transferlab.train``).

Compose (Hydra) -> build every part (:mod:`transferlab.build`) -> fit and score the best
checkpoint on val and test (:mod:`transferlab.fit`) -> write ``metrics.json`` and the rest of the
run dir (:mod:`transferlab.outputs`).
"""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig, OmegaConf

from transferlab.build import build_experiment
from transferlab.config import CONF_DIR
from transferlab.errors import run_or_explain
from transferlab.fit import fit_and_evaluate
from transferlab.loggers import finish_loggers
from transferlab.outputs import export_backbone, export_fisher, write_outputs
from transferlab.sweep import refuse_ddp_relaunch, run_isolated

log = logging.getLogger("transferlab")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment end to end and return its final metrics."""
    start = time.perf_counter()
    if cfg.get("print_config"):
        log.info("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    run = build_experiment(cfg)  # every part built and checked before the run dir is written
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "config.yaml").write_text(OmegaConf.to_yaml(run.config))
    for lg in run.loggers:
        lg.log_hyperparams(run.config)
    if run.resume_point is not None:
        epoch, step = run.resume_point
        log.info(
            "resuming from %s (epoch %d done, step %d): this run continues there; earlier "
            "lines of this log are the run before the interruption",
            run.ckpt_path,
            epoch,
            step,
        )
    try:
        refuse_ddp_relaunch(run.trainer)
        metrics, best = fit_and_evaluate(run.trainer, run.module, run.fit_data, run.ckpt_path)
    finally:
        finish_loggers(run.loggers)
    if run.features is not None:
        metrics["time/feature_pass_s"] = round(run.features.seconds, 2)
    metrics["data/skipped_images"] = float(len(run.datamodule.skipped))
    metrics["time/wall_s"] = round(time.perf_counter() - start, 2)
    if run.trainer.is_global_zero:
        if run.export_backbone:
            export_backbone(run.module, run.export_backbone)
        if run.export_fisher:
            export_fisher(run.module, run.datamodule, run.export_fisher)
        write_outputs(run.module, metrics, run.out, best)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    # inside a -m sweep a failing job is recorded in its dir and the sweep goes on
    metrics = run_or_explain(lambda c: run_isolated(train, c), cfg)
    if metrics is None:
        return float("nan")  # Optuna marks the trial failed; the report lists it
    return metrics.get(cfg.get("optimized_metric") or "val/acc")


if __name__ == "__main__":
    main()
