"""The jobs of a head sweep (``transferlab-train -m hydra/launcher=heads ...``), run one after the
other in this process over one backbone and one set of cached features.

Each job's dir gets what a training run's dir holds for the report: ``config.yaml``,
``metrics.json`` and ``csv/metrics.csv`` (one row per epoch). The best job by the sweep's
``optimized_metric`` also gets ``checkpoints/best.ckpt``, which ``transferlab-eval``,
``transferlab-export`` and ``transferlab-predict`` read like any run's (``checkpoints=all``: every
job). Confusion-matrix and reliability plots are left to single runs.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.build.head_sweep import build_head_job, build_shared
from transferlab.errors import ConfigError
from transferlab.files import write_atomic, write_json
from transferlab.head_sweep import better, fit_head, one_thread

log = logging.getLogger("transferlab")

CHECKPOINTS = ("winner", "all", "none")


def rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(module, path: Path, epoch: int, step: int) -> None:
    """A checkpoint in the layout ``transferlab-train`` writes (weights + stored config)."""
    state = {
        "state_dict": module.state_dict(),
        "epoch": epoch,
        "global_step": step,
        "pytorch-lightning_version": pl.__version__,
    }
    module.on_save_checkpoint(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def write_history(rows: list[dict], path: Path) -> None:
    """Per-epoch metrics as ``csv/metrics.csv`` (the columns the report's curves read)."""
    columns = ["epoch", "step", *sorted({k for r in rows for k in r} - {"epoch", "step"})]
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, write)


class HeadSweep:
    """State shared by the jobs of one head sweep: the backbone, its features and the best job.

    Args:
        checkpoints: which jobs get ``checkpoints/best.ckpt``: ``winner`` (the best by the
            sweep's optimized metric), ``all`` or ``none``.
    """

    def __init__(self, checkpoints: str = "winner"):
        if checkpoints not in CHECKPOINTS:
            raise ConfigError(
                f"hydra.launcher.checkpoints must be one of {', '.join(CHECKPOINTS)}, got "
                f"{checkpoints!r}."
            )
        self.checkpoints = checkpoints
        self.base = None
        self.prepare_seconds = 0.0
        self.start_rng: tuple | None = None
        self.winner: tuple | None = None  # (score, module, run dir, best epoch, steps)

    def prepare(self, cfg: DictConfig) -> None:
        """Build the backbone, data and train/val features the jobs share (from the first job)."""
        start = time.perf_counter()
        self.base = build_shared(cfg)
        # the global RNG as a run of this config has it when training starts (the head is
        # drawn from its own seeded stream): every job's dropout draws the same numbers
        self.start_rng = rng_state()
        for split in ("train", "val"):
            self.base.features[split]
        self.prepare_seconds = time.perf_counter() - start

    def run(self, cfg: DictConfig) -> dict[str, float]:
        """Train one job's head and write its run dir; returns its metrics. The first job's
        wall time includes building the shared parts."""
        start, self.prepare_seconds = time.perf_counter() - self.prepare_seconds, 0.0
        module, data = build_head_job(cfg, self.base)
        set_rng_state(self.start_rng)
        with one_thread():
            fit = fit_head(
                module,
                data,
                cfg.trainer.max_epochs,
                clip=cfg.trainer.get("gradient_clip_val"),
                monitor=cfg.optimized_metric,
                mode=self.mode(cfg),
            )
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(module.extra["config"]))
        steps = fit.history[-1]["step"]
        if self.checkpoints == "all":
            save_checkpoint(module, out / "checkpoints" / "best.ckpt", fit.best_epoch, steps)
        metrics = dict(sorted(fit.metrics.items()))
        # the feature passes this job paid for: the shared train/val (first job) and test ones
        metrics["time/feature_pass_s"] = round(self.base.features.seconds, 2)
        self.base.features.seconds = 0.0
        metrics["data/skipped_images"] = float(len(self.base.datamodule.skipped))
        metrics["time/wall_s"] = round(time.perf_counter() - start, 2)
        write_history(fit.history, out / "csv" / "metrics.csv")
        write_json(out / "metrics.json", metrics)
        score = metrics.get(cfg.optimized_metric, float("nan"))
        if self.checkpoints == "winner" and better(
            score, self.winner and self.winner[0], self.mode(cfg)
        ):
            self.winner = (score, module, out, fit.best_epoch, steps)
        log.info(
            "%s %.4f, test/acc %.4f, best epoch %d of %d, %.2f s (%s)",
            cfg.optimized_metric,
            score,
            metrics.get("test/acc", float("nan")),
            fit.best_epoch + 1,
            len(fit.history),
            metrics["time/wall_s"],
            out,
        )
        return metrics

    @staticmethod
    def mode(cfg: DictConfig) -> str:
        """Whether the optimized metric is better high (``max``) or low, as the checkpoint says."""
        checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
        return checkpoint.get("mode", "max")

    def finish(self) -> Path | None:
        """Write the best job's checkpoint (``checkpoints=winner``); returns its path."""
        if self.winner is None:
            return None
        score, module, out, epoch, steps = self.winner
        path = out / "checkpoints" / "best.ckpt"
        save_checkpoint(module, path, epoch, steps)
        log.info("best head of the sweep: %s (%.4f); checkpoint %s", out, score, path)
        return path
