"""``hydra/launcher=heads``: a head-only sweep trained in this process over one backbone pass.

The jobs run one after the other as Hydra's basic launcher runs them (each gets its job dir,
``.hydra/`` files and log), but they share the backbone and its cached features and train their
heads without a Trainer (``transferlab.train_heads``). Refused before anything is written when
the jobs differ in more than head settings. Hydra finds launchers only under ``hydra_plugins``,
so this module holds the thin Hydra adapter and nothing else.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.transferlab_launcher.parallel_launcher import job_configs
from transferlab.build.head_sweep import check_head_sweep
from transferlab.errors import ConfigError, exit_refused, run_or_explain
from transferlab.sweep import run_isolated
from transferlab.train_heads import HeadSweep

log = logging.getLogger(__name__)


def remember_sweep_configs(loader) -> None:
    """Compose each job once: the sweeper composes every job of a batch to check it, then the
    launcher would compose each again (in a head sweep that is most of the time it takes). The
    checked configs are kept and handed to the launcher, each once."""
    compose, kept = loader.load_sweep_config, {}

    def load_sweep_config(master_config, sweep_overrides):
        key = (id(master_config), tuple(sweep_overrides))
        if key in kept:
            return kept.pop(key)
        kept[key] = compose(master_config, sweep_overrides)
        return copy.deepcopy(kept[key])  # the sweeper's copy; the launcher gets the kept one

    loader.load_sweep_config = load_sweep_config


class HeadsLauncher(Launcher):
    """Trains a sweep's heads in this process (``heads.yaml``)."""

    def __init__(self, checkpoints: str = "winner") -> None:
        try:  # refused here, before the sweep dir is made
            self.sweep = HeadSweep(checkpoints)
        except ConfigError as e:
            exit_refused(e)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        if config.hydra.job.config_name != "train":
            exit_refused(
                ConfigError(
                    "hydra/launcher=heads runs training sweeps only (transferlab-train -m)."
                )
            )
        self.config, self.hydra_context = config, hydra_context
        remember_sweep_configs(hydra_context.config_loader)

    def job(self, cfg: DictConfig) -> float:
        """One job: the shared parts on the first (a refusal there stops the sweep), then the
        head; a job that fails later is recorded in its dir and the sweep goes on."""
        if self.sweep.base is None:
            run_or_explain(self.sweep.prepare, cfg)
        metrics = run_isolated(self.sweep.run, cfg)
        if metrics is None:
            return float("nan")
        return metrics.get(cfg.get("optimized_metric") or "val/acc", float("nan"))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        start = time.perf_counter()
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configs = job_configs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            check_head_sweep(configs)
        except ConfigError as e:
            # the sweeper has written multirun.yaml by now; a refused sweep leaves no dir
            if sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml"}:
                shutil.rmtree(sweep_dir)
            exit_refused(e)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            f"Training {len(configs)} heads in this process over one backbone pass "
            f"(configs composed in {time.perf_counter() - start:.1f} s)"
        )
        results = []
        for idx, (sweep_config, overrides) in enumerate(zip(configs, job_overrides, strict=True)):
            log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
            HydraConfig.instance().set_config(sweep_config)
            results.append(
                run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.job,
                    config=sweep_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
        self.sweep.finish()
        log.info(f"{len(configs)} heads trained and written in {time.perf_counter() - start:.1f} s")
        return results
