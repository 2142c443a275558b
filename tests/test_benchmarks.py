"""The benchmarks' interval code on inputs whose answer is known, and the GPU script's skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks.stats import paired_bootstrap_ci, per_run_ratios


def test_constant_steps_give_the_exact_ratio_and_a_zero_width_interval():
    ci = paired_bootstrap_ci([[2.0] * 50, [2.0] * 30], [[1.6] * 40, [1.6] * 9], n_boot=200)
    assert ci["value"] == ci["ci_low"] == ci["ci_high"] == pytest.approx(1.25)
    diff = paired_bootstrap_ci([[0.012] * 20], [[0.010] * 20], "difference", n_boot=200)
    assert diff["value"] == pytest.approx(0.002) and diff["ci_high"] == pytest.approx(0.002)


def pairs(ratio: float, n_pairs: int, steps: int, seed: int = 1) -> tuple[list, list]:
    """Step times of two arms, ``ratio`` apart, under a load that differs from pair to pair by
    up to 2x (as on a shared machine) and 10% step-to-step noise."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for load in rng.uniform(0.7, 1.4, n_pairs):
        a.append(list(ratio * load * rng.lognormal(0.0, 0.1, steps)))
        b.append(list(load * rng.lognormal(0.0, 0.1, steps)))
    return a, b


def test_pairs_cancel_the_load_and_the_interval_resolves_one_percent():
    few = paired_bootstrap_ci(*pairs(1.02, 6, 9), n_boot=500)
    many = paired_bootstrap_ci(*pairs(1.02, 26, 40), n_boot=500)
    for ci in (few, many):
        assert ci["ci_low"] < 1.02 < ci["ci_high"]
    assert many["ci_high"] - many["ci_low"] < few["ci_high"] - few["ci_low"]
    assert many["ci_high"] - many["ci_low"] < 0.03  # within +-1.5% though the load varies 2x


def test_unpaired_groups_are_refused():
    with pytest.raises(ValueError, match="same number"):
        paired_bootstrap_ci([[1.0], [1.0]], [[1.0]])


def test_per_run_ratios_pair_runs_in_order():
    r = per_run_ratios([[2, 2, 2], [3, 3]], [[1, 1, 1], [2, 2]])
    assert r["ratios"] == [2.0, 1.5] and r["min"] == 1.5 and r["max"] == 2.0
    assert r["median"] == pytest.approx(1.75) and r["std"] == pytest.approx(0.3535, abs=1e-3)


def test_unknown_statistic_is_refused():
    with pytest.raises(ValueError, match="'ratio' or 'difference'"):
        paired_bootstrap_ci([[1.0]], [[1.0]], "mean")


def test_gpu_script_without_a_gpu_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides any GPU, as on a CPU machine
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path)]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "No GPU is visible (torch.cuda.is_available() is false): nothing measured."
    )
    assert not list(tmp_path.iterdir())  # no JSON of figures that were never measured
