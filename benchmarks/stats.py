"""Intervals for benchmark figures: a block bootstrap over step times, and per-repetition spread.

Step times of one run are not independent draws: the load of a shared machine drifts, so
neighbouring steps are alike. Resampling single steps would then give an interval that is too
narrow; resampling blocks of consecutive steps keeps that dependence (Künsch 1989, "The
jackknife and the bootstrap for general stationary observations").
"""

from __future__ import annotations

import math
import statistics

import numpy as np


def _resampled(runs: list[np.ndarray], block: int, rng: np.random.Generator) -> np.ndarray:
    """One moving-block bootstrap sample of each run, pooled: blocks of ``block`` consecutive
    steps drawn with replacement until the run's length is reached."""
    out = []
    for run in runs:
        n = len(run)
        b = min(block, n)
        starts = rng.integers(0, n - b + 1, size=math.ceil(n / b))
        out.append(np.concatenate([run[s : s + b] for s in starts])[:n])
    return np.concatenate(out)


def bootstrap_ci(
    a_runs: list[list[float]],
    b_runs: list[list[float]],
    statistic: str = "ratio",
    block: int = 10,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Point value and percentile interval of median(a) / median(b) (``statistic="ratio"``) or
    median(a) - median(b) (``"difference"``), steps pooled over each arm's runs.

    Args:
        a_runs, b_runs: per-run step times of each arm (runs of an arm may differ in length).
        statistic: "ratio" or "difference".
        block: consecutive steps resampled together (1 = the plain bootstrap).
        n_boot: bootstrap samples.
        level: coverage of the interval.
        seed: the resampling's random seed (the interval is reproducible).
    """
    if statistic not in ("ratio", "difference"):
        raise ValueError(f"statistic must be 'ratio' or 'difference', got {statistic!r}")
    combine = np.divide if statistic == "ratio" else np.subtract
    a = [np.asarray(r, dtype=float) for r in a_runs if len(r)]
    b = [np.asarray(r, dtype=float) for r in b_runs if len(r)]
    point = float(combine(np.median(np.concatenate(a)), np.median(np.concatenate(b))))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            combine(np.median(_resampled(a, block, rng)), np.median(_resampled(b, block, rng)))
            for _ in range(n_boot)
        ]
    )
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"value": point, "ci_low": float(low), "ci_high": float(high), "level": level}


def per_run_ratios(a_runs: list[list[float]], b_runs: list[list[float]]) -> dict:
    """median(a_i) / median(b_i) for each pair of runs i (run next to each other, so under
    about the same load), with their median, min, max and standard deviation."""
    ratios = [
        statistics.median(a) / statistics.median(b) for a, b in zip(a_runs, b_runs, strict=True)
    ]
    return {
        "ratios": ratios,
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "std": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
    }
