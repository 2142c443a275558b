"""Experiment files: each opens with its command, every value it sweeps composes, and (slow)
``-m experiment=glob(*)`` runs every one of them for a batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import CONF, FAST
from transferlab import compose

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((CONF / "experiment").glob("*.yaml"))


def sweep_params(path: Path) -> dict[str, list[str]]:
    """The ``hydra.sweeper.params`` of an experiment file as {key: [values]}."""
    params = (yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper", {})
    return {k: str(v).split(",") for k, v in (params.get("params") or {}).items()}


def compose_train(overrides: list[str]):
    return compose(overrides, keep_hydra=True)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_opens_with_the_command_that_runs_it(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert any(f"experiment={path.stem}" in line for line in lines if line.startswith("#"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_swept_value_composes(path):
    for key, values in sweep_params(path).items():
        for value in values:
            cfg = compose_train([*FAST, f"experiment={path.stem}", f"{key}={value}"])
            with open_dict(cfg):
                del cfg["hydra"]  # the job sees it only through HydraConfig
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
            choice = HydraConfig.get().runtime.choices.get(key)
            assert choice == value or OmegaConf.select(cfg, key) == yaml.safe_load(value)
    GlobalHydra.instance().clear()


def test_the_exercises_sweep_what_they_promise():
    params = {p.stem: sweep_params(p) for p in EXPERIMENTS}
    ex1 = params["exercise1_compare_strategies"]
    assert ex1["strategy"] == ["feature_extraction", "partial", "full", "two_phase"]
    ex2 = params["exercise2_unfreeze_schedules"]
    assert ex2["schedule"] == ["every_epoch", "every_5_epochs", "on_plateau"]
    ex4 = params["exercise4_ablation"]
    assert {"backbone", "strategy", "augmentation", "scheduler"} <= set(ex4)
    se = params["sample_efficiency"]
    assert se["data.n_per_class"] == ["5", "10", "25", "50", "100", "null"]
    assert se["strategy"] == ["scratch", "feature_extraction", "full"]


def test_plateau_schedule_uses_the_monitor_not_the_epoch_count():
    cfg = compose_train([*FAST, "experiment=exercise2_unfreeze_schedules", "schedule=on_plateau"])
    assert cfg.strategy.unfreeze.every is None
    assert cfg.strategy.unfreeze.monitor == "val/loss"
    cfg = compose_train(
        [*FAST, "experiment=exercise2_unfreeze_schedules", "schedule=every_5_epochs"]
    )
    assert cfg.strategy.unfreeze.every == 5 and cfg.strategy.unfreeze.monitor is None
    GlobalHydra.instance().clear()


@pytest.mark.slow
def test_every_experiment_runs_one_batch(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "transferlab.train", "-m", "experiment=glob(*)", *FAST]
    cmd += ["+trainer.fast_dev_run=true", f"paths.root_dir={tmp_path}"]
    cmd += [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == len(EXPERIMENTS)
    for job in jobs:
        assert not (job / "failure.json").exists(), (job / "failure.json").read_text()
        assert "test/acc" in json.loads((job / "metrics.json").read_text())
