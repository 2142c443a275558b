"""The benchmarks' interval code on inputs whose answer is known, and the GPU script's skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks.stats import bootstrap_ci, per_run_ratios


def test_constant_steps_give_the_exact_ratio_and_a_zero_width_interval():
    ci = bootstrap_ci([[2.0] * 50, [2.0] * 30], [[1.6] * 40], "ratio", n_boot=200)
    assert ci["value"] == ci["ci_low"] == ci["ci_high"] == pytest.approx(1.25)
    diff = bootstrap_ci([[0.012] * 20], [[0.010] * 20], "difference", n_boot=200)
    assert diff["value"] == pytest.approx(0.002) and diff["ci_high"] == pytest.approx(0.002)


def test_interval_covers_a_known_ratio_and_narrows_with_more_steps():
    rng = np.random.default_rng(1)

    def runs(n, scale):  # log-normal step times around `scale`, as on a busy machine
        return [list(scale * rng.lognormal(0.0, 0.1, n)) for _ in range(4)]

    small = bootstrap_ci(runs(25, 1.02), runs(25, 1.0), "ratio", n_boot=500)
    large = bootstrap_ci(runs(400, 1.02), runs(400, 1.0), "ratio", n_boot=500)
    for ci in (small, large):
        assert ci["ci_low"] < 1.02 < ci["ci_high"]
    assert large["ci_high"] - large["ci_low"] < small["ci_high"] - small["ci_low"]
    assert (
        large["ci_high"] - large["ci_low"] < 0.02
    )  # 1,600 steps an arm resolve 1% (theory: 0.017)


def test_blocks_widen_the_interval_when_neighbouring_steps_are_alike():
    # each run is slow for its first half and fast for its second (a load that drifts)
    drift = [[1.0] * 50 + [1.2] * 50, [1.2] * 50 + [1.0] * 50]
    noise = np.random.default_rng(2).lognormal(0, 0.01, 100)
    a, b = [list(r * noise) for r in drift], [list(r * noise[::-1]) for r in drift]
    plain = bootstrap_ci(a, b, "ratio", block=1, n_boot=500)
    blocks = bootstrap_ci(a, b, "ratio", block=25, n_boot=500)
    assert blocks["ci_high"] - blocks["ci_low"] > plain["ci_high"] - plain["ci_low"]


def test_per_run_ratios_pair_runs_in_order():
    r = per_run_ratios([[2, 2, 2], [3, 3]], [[1, 1, 1], [2, 2]])
    assert r["ratios"] == [2.0, 1.5] and r["min"] == 1.5 and r["max"] == 2.0
    assert r["median"] == pytest.approx(1.75) and r["std"] == pytest.approx(0.3535, abs=1e-3)


def test_unknown_statistic_is_refused():
    with pytest.raises(ValueError, match="'ratio' or 'difference'"):
        bootstrap_ci([[1.0]], [[1.0]], "mean")


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
