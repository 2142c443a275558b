"""Turn a multirun dir into results.csv, report.md and plots: ``transferlab-report DIR``.

Every job dir under DIR (one with ``.hydra/overrides.yaml``) is a run. A run either wrote
``metrics.json`` or, when it raised, ``failure.json``. Runs that differ only in their seed form
one configuration (an arm); report.md gives each arm's mean ± sample std over its seeds.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from transferlab.errors import ConfigError
from transferlab.sweep import DISPLAY_KEYS, FAILURE_FILE, REPEAT_KEYS

METRIC_COLUMNS = ("val/acc", "test/acc", "test/f1", "test/auroc")
COST_COLUMNS = ("time/wall_s", "params/trainable", "params/total")


@dataclass
class Run:
    """One job of a sweep: its dir, overrides as {key: value}, and metrics or failure."""

    job: str
    dir: Path
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    failure: dict | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None or not self.metrics


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``["strategy=full", "+x=1"]`` -> ``{"strategy": "full", "x": "1"}``."""
    pairs = (str(line).split("=", 1) for line in lines)
    return {key.lstrip("+~"): value for key, value in (p for p in pairs if len(p) == 2)}


def read_run(job_dir: Path, sweep_dir: Path) -> Run:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    run = Run(str(job_dir.relative_to(sweep_dir)), job_dir, parse_overrides(overrides))
    if (job_dir / "metrics.json").is_file():
        run.metrics = json.loads((job_dir / "metrics.json").read_text())
    if (job_dir / FAILURE_FILE).is_file():
        run.failure = json.loads((job_dir / FAILURE_FILE).read_text())
    elif not run.metrics:
        run.failure = {"error": "NoMetrics", "message": "the job wrote neither metrics nor failure"}
    return run


def collect_runs(sweep_dir: Path) -> list[Run]:
    """Every job under ``sweep_dir``, in job-number order."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"No multirun dir at {sweep_dir}; pass the dir a `-m` sweep printed.")
    job_dirs = [p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")]
    job_dirs = [d for d in job_dirs if d != sweep_dir]
    if not job_dirs:
        raise ConfigError(
            f"No sweep jobs (dirs with .hydra/overrides.yaml) under {sweep_dir}; pass the dir a "
            "`-m` sweep printed, e.g. outputs/multirun/<date>."
        )

    def order(d: Path):  # numbers as numbers at every level: study/2 before study/10
        parts = d.relative_to(sweep_dir).parts
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)

    return [read_run(d, sweep_dir) for d in sorted(job_dirs, key=order)]


def varying_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs between runs, in first-seen order."""
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


def arm_keys(runs: list[Run]) -> list[str]:
    """The varying keys that pick a configuration (seeds repeat one; display settings such as
    the progress bar change nothing)."""
    return [k for k in varying_keys(runs) if k not in (*REPEAT_KEYS, *DISPLAY_KEYS)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class Arm:
    """One configuration and its successful runs' statistics."""

    choices: dict[str, str]
    runs: list[Run]
    stats: dict[str, tuple[float, float]]


def summarise(runs: list[Run], keys: list[str]) -> list[Arm]:
    """Group successful runs by the values of ``keys``; mean ± std of every numeric metric."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if not run.failed:
            groups.setdefault(tuple(run.overrides.get(k, "") for k in keys), []).append(run)
    arms = []
    for values, members in groups.items():
        names = dict.fromkeys(m for r in members for m in r.metrics)
        stats = {
            name: mean_std([r.metrics[name] for r in members if name in r.metrics])
            for name in names
        }
        arms.append(Arm(dict(zip(keys, values, strict=True)), members, stats))
    return arms


def best_arm(arms: list[Arm], metric: str) -> Arm | None:
    scored = [a for a in arms if metric in a.stats and not math.isnan(a.stats[metric][0])]
    return max(scored, key=lambda a: a.stats[metric][0], default=None)


def write_results_csv(runs: list[Run], path: Path) -> None:
    """One row per run: job, status, every override, the key metrics and costs, the error."""
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    extra = sorted({m for r in runs for m in r.metrics} - {*METRIC_COLUMNS, *COST_COLUMNS})
    columns = ["job", "status", *keys, *METRIC_COLUMNS, *COST_COLUMNS, *extra, "error"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for r in runs:
            error = f"{r.failure['error']}: {r.failure['message']}" if r.failure else ""
            status = "failed" if r.failed else "ok"
            writer.writerow(
                {"job": r.job, "status": status, **r.overrides, **r.metrics, "error": error}
            )
