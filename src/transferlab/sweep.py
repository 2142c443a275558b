"""What a job needs to know about the sweep it belongs to: failure isolation, the choices that
name it, and a guard against DDP re-running the sweep from inside a job.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from transferlab.errors import ConfigError, config_error_in
from transferlab.files import write_json

log = logging.getLogger("transferlab")

FAILURE_FILE = "failure.json"
# overrides that repeat a configuration rather than change it
REPEAT_KEYS = ("seed",)
# overrides that change only what a run prints, not what it computes
DISPLAY_KEYS = ("print_config", "trainer.enable_progress_bar", "trainer.enable_model_summary")


def in_multirun() -> bool:
    """True inside a job of a ``-m`` sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def config_choices() -> dict[str, str]:
    """The config-group choices of this run (``hydra.runtime.choices``), Hydra's own left out."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: str(v) for k, v in choices.items() if v is not None and not k.startswith("hydra/")}


def job_overrides() -> list[str]:
    """The command-line overrides that made this job, e.g. ``["strategy=full", "seed=1"]``."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def configuration_key(overrides: list[str]) -> str:
    """The overrides that pick a configuration, repeats (seeds) dropped: one key per arm."""
    ignored = (*REPEAT_KEYS, *DISPLAY_KEYS)
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ignored]
    return ",".join(kept) or "default"


def record_failure(out: Path, error: BaseException) -> Path:
    """Write ``failure.json`` for a job that raised ``error`` into its job dir ``out``."""
    reason = config_error_in(error) or error
    trace = "".join(traceback.format_exception(error))
    return write_failure(out, type(reason).__name__, str(reason), job_overrides(), trace)


def write_failure(out: Path, error: str, message: str, overrides: list[str], trace: str) -> Path:
    """``out/failure.json``: the error's type name, its message, the job's overrides, traceback."""
    record = {"error": error, "message": message, "overrides": overrides, "traceback": trace}
    return write_json(out / FAILURE_FILE, record)


def run_isolated(fn, cfg):
    """Run ``fn(cfg)``; inside a sweep a raising job is recorded and the sweep goes on.

    Returns ``fn``'s result, or ``None`` for a job that failed inside a sweep (its reason is in
    ``<job dir>/failure.json``). Outside a sweep the exception propagates unchanged.
    """
    if not in_multirun():
        return fn(cfg)
    try:
        return fn(cfg)
    except Exception as e:  # one bad job must not stop the other jobs of the sweep
        path = record_failure(Path(HydraConfig.get().runtime.output_dir), e)
        finish_wandb_run()
        log.error("job failed (%s: %s); recorded in %s", type(e).__name__, e, path)
        return None


def finish_wandb_run() -> None:
    """Mark a W&B run still open after a failure as failed, so the next job starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1)


def refuse_ddp_relaunch(trainer) -> None:
    """Stop a sweep job whose DDP strategy would start its ranks by re-running the command line.

    Lightning's script launcher re-executes ``sys.argv``, which in a ``-m`` job is the whole
    sweep (every rank would launch every job again). Ranks started by SLURM or torchrun are safe.
    """
    if not in_multirun():
        return
    launcher = getattr(trainer.strategy, "launcher", None)
    if type(launcher).__name__ == "_SubprocessScriptLauncher":
        raise ConfigError(
            "trainer.strategy=ddp with more than one process cannot start inside a -m sweep job "
            "(it would re-run the whole sweep); run the multi-GPU job on its own without -m, or "
            "sweep on SLURM with hydra/launcher=slurm and hydra.launcher.tasks_per_node set to "
            "the number of GPUs."
        )


class SweepOutcome(Callback):
    """Ends a ``-m`` sweep with exit status 1 when any of its jobs failed, after every job ran,
    saying how many failed and where their ``failure.json`` files are (``hydra.callbacks``)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = [p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")]
        failed = sorted(str(j.relative_to(sweep_dir)) for j in jobs if (j / FAILURE_FILE).is_file())
        if not failed:
            return
        print(
            f"error: {len(failed)} of {len(jobs)} sweep jobs failed (jobs {', '.join(failed)}; "
            f"reasons in <job>/{FAILURE_FILE}); the other jobs finished, and "
            f"`transferlab-report {sweep_dir}` lists both.",
            file=sys.stderr,
        )
        raise SystemExit(1)
