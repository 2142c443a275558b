"""Multiruns: a failing job does not stop the sweep, the local parallel and Ray launchers run a
sweep in parallel, launcher and search configs compose, and DDP that would re-run the sweep is
refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import open_dict, read_write

from hydra_plugins.transferlab_launcher.parallel_launcher import job_return
from transferlab import compose
from transferlab.errors import ConfigError
from transferlab.launcher import WorkerCrash
from transferlab.report import write_report
from transferlab.sweep import configuration_key, refuse_ddp_relaunch

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "backbone=tiny",
    "backbone.weights=null",
    "data=synthetic",
    "data.num_samples=64",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "print_config=false",
]


def sweep(
    tmp_path: Path, *overrides: str, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``transferlab-train -m`` in a subprocess, its sweep dir in ``tmp_path/sweep``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_DEDUP_LOGS": "0", **(env or {})}
    cmd = [sys.executable, "-m", "transferlab.train", "-m", *TINY, *overrides]
    cmd += [f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    # as a user types it: no sweep dir given, so the default one under ./outputs/multirun
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "transferlab.train", "-m", *TINY]
    cmd += ["backbone.name=no_such_net,test_resnet"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]  # after every job ran, it says how many failed
    assert "error: 1 of 2 sweep jobs failed (jobs 0;" in res.stderr
    [made] = (tmp_path / "outputs" / "multirun").iterdir()
    made.rename(tmp_path / "sweep")
    failure = json.loads((tmp_path / "sweep" / "0" / "failure.json").read_text())
    assert failure["error"] == "ConfigError"
    assert "Unknown backbone 'no_such_net'" in failure["message"]
    assert "backbone.name=no_such_net" in failure["overrides"]
    assert (tmp_path / "sweep" / "1" / "metrics.json").is_file()  # the job after it ran
    write_report(tmp_path / "sweep")
    text = (tmp_path / "sweep" / "report.md").read_text()
    assert "1 finished, 1 failed" in text
    assert "| 0 | `backbone.name=no_such_net` | ConfigError: Unknown backbone" in text


@pytest.mark.slow  # starts a local Ray (~40 s on 2 idle cores)
def test_ray_launcher_runs_a_four_job_sweep_and_the_report_is_right(tmp_path):
    res = sweep(
        tmp_path,
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.num_cpus=2",
        "strategy=feature_extraction,full",
        "seed=0,1",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    root = tmp_path / "sweep"
    for job in range(4):
        assert (root / str(job) / "metrics.json").is_file()
        assert (root / str(job) / "train.log").is_file()  # each job logs into its own dir
    write_report(root)
    text = (root / "report.md").read_text()
    assert "4 runs: 4 finished, 0 failed" in text
    for strategy in ("feature_extraction", "full"):
        accs = [
            json.loads((root / str(j) / "metrics.json").read_text())["test/acc"]
            for j in range(4)
            if f"strategy={strategy}" in (root / str(j) / ".hydra" / "overrides.yaml").read_text()
        ]
        assert len(accs) == 2
        row = next(line for line in text.splitlines() if line.startswith(f"| {strategy} |"))
        assert f"| {strategy} | 2 |" in row
        assert f"{sum(accs) / 2:.3f} ± " in row


def test_a_lost_job_is_recorded_and_the_report_lists_it(tmp_path):
    cfg = hydra_cfg(["hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path}", "seed=4"])
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.num = 3
    ret = job_return(cfg, ["seed=4"], WorkerCrash(-signal.SIGKILL))
    assert ret.return_value != ret.return_value  # NaN: a failed trial to a sweeper, no raise
    failure = json.loads((tmp_path / "3" / "failure.json").read_text())
    assert failure["error"] == "WorkerCrash" and failure["overrides"] == ["seed=4"]
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "WorkerCrash: the job's worker process was killed by SIGKILL" in text


def test_a_sweep_on_two_local_slots_completes_past_a_failing_job(tmp_path):
    res = sweep(
        tmp_path,
        "hydra/launcher=parallel",
        "hydra.launcher.slots=2",
        "backbone.name=test_resnet,no_such_net",
        "seed=0,1",
    )
    assert res.returncode == 1, res.stderr[-3000:]
    assert "error: 2 of 4 sweep jobs failed" in res.stderr
    assert "Launching 4 jobs on 2 local slots" in res.stdout + res.stderr
    root = tmp_path / "sweep"
    for job in range(4):
        overrides = (root / str(job) / ".hydra" / "overrides.yaml").read_text()
        made = "metrics.json" if "test_resnet" in overrides else "failure.json"
        assert (root / str(job) / made).is_file()
        assert (root / str(job) / "train.log").is_file()  # each job logs into its own dir
    write_report(root)
    text = (root / "report.md").read_text()
    assert "4 runs: 2 finished, 2 failed" in text
    assert "ConfigError: Unknown backbone 'no_such_net'" in text


def test_zero_slots_is_one_sentence_and_writes_nothing(tmp_path):
    res = sweep(tmp_path, "hydra/launcher=parallel", "hydra.launcher.slots=0", "seed=0,1")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "error: hydra.launcher.slots=0 must be at least 1; leave it null for one slot per GPU "
        "(or CPU core) and the CPU cores shared out evenly."
    )
    assert "Traceback" not in res.stderr and not (tmp_path / "sweep").exists()


def test_a_job_whose_worker_is_killed_costs_that_job_only(tmp_path):
    helpers = Path(__file__).parent / "helpers"
    res = sweep(
        tmp_path,
        "hydra/launcher=parallel",
        "hydra.launcher.slots=1",  # one slot: the job after the crash needs a fresh worker
        "+callbacks.crash._target_=crash_callback.KillOnFitStart",
        "+callbacks.crash.kill=true,false",
        env={"PYTHONPATH": f"{helpers}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert res.returncode == 1, res.stderr[-3000:]
    root = tmp_path / "sweep"
    failure = json.loads((root / "0" / "failure.json").read_text())
    assert failure["error"] == "WorkerCrash"
    assert failure["message"] == "the job's worker process was killed by SIGKILL (out of memory?)"
    assert (root / "1" / "metrics.json").is_file()
    write_report(root)
    assert "2 runs: 1 finished, 1 failed" in (root / "report.md").read_text()


def metrics_by_strategy(sweep_dir: Path) -> dict[str, dict]:
    """Each finished job's metrics.json, keyed by its ``strategy=`` override."""
    found = {}
    for job in sweep_dir.iterdir():
        if (job / "metrics.json").is_file():
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
            [strategy] = [o for o in overrides if o.startswith("strategy=")]
            found[strategy] = json.loads((job / "metrics.json").read_text())
    return found


def test_jobs_on_local_slots_give_the_numbers_they_give_one_at_a_time(tmp_path):
    grid = ("strategy=feature_extraction,full", "seed=3")
    # one CPU thread per job under both launchers, so the arithmetic is the same
    alone = sweep(tmp_path / "basic", *grid, env={"OMP_NUM_THREADS": "1"})
    slots = sweep(
        tmp_path / "parallel",
        *grid,
        "hydra/launcher=parallel",
        "hydra.launcher.slots=2",
        "hydra.launcher.threads_per_job=1",
    )
    assert alone.returncode == 0 and slots.returncode == 0, (alone.stderr + slots.stderr)[-3000:]
    basic, parallel = (metrics_by_strategy(tmp_path / d / "sweep") for d in ("basic", "parallel"))
    assert len(basic) == 2 and basic.keys() == parallel.keys()
    for key, metrics in parallel.items():
        expected = basic[key]
        for name in ("val/loss", "val/acc", "test/acc", "test/loss"):
            assert metrics[name] == expected[name], (key, name)


def hydra_cfg(overrides: list[str]):
    """The composed config with its ``hydra`` node, as the launcher sees it."""
    return compose(overrides, keep_hydra=True)


@pytest.mark.parametrize(
    ("choice", "target"),
    [
        ("parallel", "transferlab_launcher.parallel_launcher.ParallelLauncher"),
        ("ray", "hydra_ray_launcher.ray_launcher.RayLauncher"),
        ("slurm", "hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_configs_compose_and_instantiate(choice, target):
    launcher_cfg = hydra_cfg([f"hydra/launcher={choice}"]).hydra.launcher
    assert launcher_cfg._target_.endswith(target)
    launcher = instantiate(launcher_cfg)
    assert type(launcher).__name__ == target.rsplit(".", 1)[1]


def test_slurm_launcher_asks_for_one_gpu_per_job():
    cfg = hydra_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.partition == "gpu"
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


def test_ray_launcher_gives_one_gpu_per_job_on_request():
    cfg = hydra_cfg(["hydra/launcher=ray", "hydra.launcher.ray.remote.num_gpus=1"])
    assert cfg.hydra.launcher.ray.remote == {"num_cpus": 1, "num_gpus": 1}
    assert cfg.hydra.launcher.ray.init.address is None  # a private local Ray by default


def in_multirun_mode(make_cfg):
    make_cfg([])
    config = HydraConfig.instance().cfg
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.mode = RunMode.MULTIRUN


def test_ddp_that_would_rerun_the_sweep_is_refused(make_cfg):
    in_multirun_mode(make_cfg)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(ConfigError, match="cannot start inside a -m sweep job"):
        refuse_ddp_relaunch(trainer)
    refuse_ddp_relaunch(pl.Trainer(accelerator="cpu", devices=1, logger=False))


def test_configuration_key_drops_the_seed():
    assert configuration_key(["strategy=full", "seed=3", "backbone=tiny"]) == (
        "strategy=full,backbone=tiny"
    )
    assert configuration_key(["seed=1"]) == "default"


def test_wandb_runs_are_grouped_and_tagged_by_the_choices(make_cfg, monkeypatch, tmp_path):
    from transferlab.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    make_cfg(["strategy=partial", "seed=2"])
    init = wandb_logger(project="p", save_dir=str(tmp_path))._wandb_init
    # the seed and display-only settings (print_config, the progress bar) do not split groups
    assert init["group"] == (
        "backbone=tiny,backbone.weights=null,trainer.accelerator=cpu,strategy=partial"
    )
    assert {"strategy:partial", "backbone:tiny", "data:mnist_split"} <= set(init["tags"])
    assert init["config"]["choices"]["strategy"] == "partial"


def test_optuna_search_composes_over_lr_multiplier_and_decay():
    cfg = hydra_cfg(["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc"
    assert set(sweeper.params) == {
        "optimizer.lr",
        "strategy.backbone_lr_mult",
        "strategy.layer_decay",
    }
    assert cfg.hydra.mode == RunMode.MULTIRUN


@pytest.mark.slow
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    res = sweep(
        tmp_path,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    accs = [
        json.loads((tmp_path / "sweep" / str(j) / "metrics.json").read_text()) for j in range(3)
    ]
    assert best["best_value"] == max(m["val/acc"] for m in accs)
