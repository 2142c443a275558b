"""Intervals for benchmark figures measured in pairs (two arms run side by side, a pair at a
time): a bootstrap that resamples whole pairs, and the spread of the per-pair ratios.

Step times are not independent draws on a shared machine: the load drifts, so steps close in
time are alike. Resampling single steps would give an interval that is too narrow. Resampling
pairs of groups (e.g. an epoch of each arm, run next to each other) keeps both that dependence
and the pairing, so a load that slowed both members of a pair cancels (the cluster bootstrap;
Davison & Hinkley 1997, "Bootstrap Methods and their Application", sec. 3.8).
"""

from __future__ import annotations

import statistics

import numpy as np


def paired_bootstrap_ci(
    a_groups: list[list[float]],
    b_groups: list[list[float]],
    statistic: str = "ratio",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Point value and percentile interval of median(a) / median(b) (``statistic="ratio"``) or
    median(a) - median(b) (``"difference"``), steps pooled over the groups; each bootstrap
    sample draws pairs (a_groups[i], b_groups[i]) with replacement.

    Args:
        a_groups, b_groups: step times per group, group i of each arm measured side by side.
        statistic: "ratio" or "difference".
        n_boot: bootstrap samples.
        level: coverage of the interval.
        seed: the resampling's random seed (the interval is reproducible).
    """
    if statistic not in ("ratio", "difference"):
        raise ValueError(f"statistic must be 'ratio' or 'difference', got {statistic!r}")
    if len(a_groups) != len(b_groups) or not a_groups:
        raise ValueError("a_groups and b_groups must hold the same number (> 0) of groups")
    combine = np.divide if statistic == "ratio" else np.subtract
    a = [np.asarray(g, dtype=float) for g in a_groups]
    b = [np.asarray(g, dtype=float) for g in b_groups]

    def value(idx) -> float:
        pooled_a = np.concatenate([a[i] for i in idx])
        pooled_b = np.concatenate([b[i] for i in idx])
        return float(combine(np.median(pooled_a), np.median(pooled_b)))

    rng = np.random.default_rng(seed)
    n = len(a)
    draws = [value(rng.integers(0, n, size=n)) for _ in range(n_boot)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"value": value(range(n)), "ci_low": float(low), "ci_high": float(high), "level": level}


def per_run_ratios(a_groups: list[list[float]], b_groups: list[list[float]]) -> dict:
    """median(a_i) / median(b_i) for each pair i (measured side by side, under about the same
    load), with their median, min, max and standard deviation."""
    ratios = [
        statistics.median(a) / statistics.median(b) for a, b in zip(a_groups, b_groups, strict=True)
    ]
    return {
        "ratios": ratios,
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "std": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
    }
