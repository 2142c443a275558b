"""``hydra/launcher=parallel``: a ``-m`` sweep's jobs side by side on local worker processes.

One job per GPU on a GPU machine (each worker sees only its GPU), one per CPU core otherwise;
see ``transferlab.launcher`` for the pool. Hydra finds launchers only under ``hydra_plugins``,
so this module holds the thin Hydra adapter and nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.errors import ConfigError, exit_refused
from transferlab.launcher import (
    JobError,
    WorkerCrash,
    check_slots,
    local_gpus,
    run_on_slots,
    slot_environments,
)
from transferlab.sweep import write_failure

log = logging.getLogger(__name__)


def job_configs(
    hydra_context: HydraContext,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[DictConfig]:
    """Each job's config, composed as Hydra's basic launcher composes it, numbered from
    ``initial_job_idx``."""
    configs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
        configs.append(sweep_config)
    return configs


class HydraJob:
    """Runs one sweep job inside a worker, as Hydra's basic launcher would in its own process."""

    def __init__(self, hydra_context: HydraContext, task_function: TaskFunction, state: Any):
        self.hydra_context, self.task_function, self.state = hydra_context, task_function, state
        self.ready = False

    def __call__(self, sweep_config: DictConfig) -> tuple[JobStatus, Any, str | None]:
        """The job's status, return value (its exception if it failed) and working dir.

        The JobReturn itself stays here: its configs hold Hydra's dataclass nodes, which do not
        pickle across processes; the parent rebuilds it from these three.
        """
        if not self.ready:  # once per worker
            setup_globals()
            Singleton.set_state(self.state)
            self.ready = True
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        return ret.status, ret._return_value, ret.working_dir


class ParallelLauncher(Launcher):
    """Runs a sweep's jobs on local worker processes, ``slots`` at a time (``parallel.yaml``)."""

    def __init__(self, slots: int | None = None, threads_per_job: int | None = None) -> None:
        try:  # refused here, before the sweep dir is made
            check_slots(slots, threads_per_job)
        except ConfigError as e:
            exit_refused(e)
        self.slots, self.threads_per_job = slots, threads_per_job
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = job_configs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        envs = slot_environments(
            self.slots, self.threads_per_job, local_gpus(), os.cpu_count() or 1
        )
        where = ", ".join(env.get("CUDA_VISIBLE_DEVICES", "cpu") for env in envs)
        threads = int(envs[0]["OMP_NUM_THREADS"])
        log.info(
            f"Launching {len(configs)} jobs on {len(envs)} local slots ({where}), "
            f"{threads} CPU thread{'s' if threads > 1 else ''} each"
        )
        done = []

        def on_start(i: int, slot: int) -> None:
            lst = " ".join(filter_overrides(job_overrides[i]))
            log.info(f"\t#{initial_job_idx + i} (slot {slot}) : {lst}")

        def on_end(i: int, result: Any, seconds: float) -> None:
            done.append(i)
            progress = f"{len(done)} of {len(configs)} jobs done"
            if isinstance(result, (WorkerCrash, JobError)):
                log.error(
                    f"\t#{initial_job_idx + i} failed after {seconds:.0f} s: {result}; {progress}"
                )
            else:
                log.info(f"\t#{initial_job_idx + i} ended after {seconds:.0f} s; {progress}")

        job = HydraJob(self.hydra_context, self.task_function, Singleton.get_state())
        results = run_on_slots(job, configs, envs, on_start, on_end)
        return [
            job_return(c, o, r) for c, o, r in zip(configs, job_overrides, results, strict=True)
        ]


def job_return(sweep_config: DictConfig, overrides: Sequence[str], result: Any) -> JobReturn:
    """The job's JobReturn, rebuilt from what its worker sent back.

    A job that never returned (its worker died, or its result could not be sent back) is recorded
    in ``failure.json`` like a job that raised inside the task, and its overrides are saved as
    Hydra would: the sweep goes on and the report lists it.
    """
    task_cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
    ret = JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=sweep_config)
    ret.task_name = sweep_config.hydra.job.name
    if isinstance(result, tuple):
        ret.status, ret.return_value, ret.working_dir = result
        return ret
    out = Path(str(sweep_config.hydra.sweep.dir)) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir")
    )
    message = result.text if isinstance(result, JobError) else str(result)
    write_failure(out, type(result).__name__, message, list(overrides), message)
    saved = out / ".hydra" / "overrides.yaml"
    if not saved.is_file():  # lost before Hydra saved it: the report finds jobs by this file
        saved.parent.mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), saved)
    ret.status, ret.return_value, ret.working_dir = JobStatus.COMPLETED, float("nan"), str(out)
    return ret
