"""Main effects of a factorial sweep: each factor's level means and the two-factor table.

A factor is an override key that picks a configuration (see :func:`~.runs.arm_keys`) and takes
two levels or more. A level's statistic pools every finished run at that level, whatever the
other factors and the seed; in a full grid every level then averages over the same mix of the
other factors, so level means of one factor compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transferlab.report.runs import Run, mean_std

MAIN_EFFECTS_PNG = "main_effects.png"
HEATMAP_PNG = "heatmap.png"


@dataclass(frozen=True)
class Level:
    """One level of a factor: the metric's mean ± sample std over its ``n`` runs."""

    value: str
    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Grid:
    """Mean metric for each (row level, column level) of two factors; NaN where no run is."""

    rows: str
    cols: str
    row_levels: list[str]
    col_levels: list[str]
    means: list[list[float]]
    counts: list[list[int]]


def measured(runs: list[Run], metric: str) -> list[Run]:
    """The finished runs that report ``metric`` as a number."""
    return [r for r in runs if not r.failed and not math.isnan(r.metrics.get(metric, math.nan))]


def level_order(values: list[str]) -> list[str]:
    """Numbers ascending when every level is one (1e-4 before 1e-3), else first-seen order."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def factor_levels(runs: list[Run], keys: list[str]) -> dict[str, list[str]]:
    """{key: its levels} for each of ``keys`` that takes two levels or more in ``runs``."""
    levels = {k: list(dict.fromkeys(r.overrides.get(k, "") for r in runs)) for k in keys}
    return {k: level_order(v) for k, v in levels.items() if len(v) > 1}


def main_effects(runs: list[Run], keys: list[str], metric: str) -> dict[str, list[Level]]:
    """{factor: one :class:`Level` per level}; empty unless two factors or more vary and the
    finished runs cover every combination of their levels (in a partial grid a level's mean
    mixes other factors' levels unevenly, so level means would not compare fairly)."""
    runs = measured(runs, metric)
    factors = factor_levels(runs, keys)
    if len(factors) < 2:
        return {}
    cells = {tuple(r.overrides.get(k, "") for k in factors) for r in runs}
    if len(cells) < math.prod(len(v) for v in factors.values()):
        return {}
    effects = {}
    for key, values in factors.items():
        effects[key] = []
        for value in values:
            scores = [r.metrics[metric] for r in runs if r.overrides.get(key, "") == value]
            effects[key].append(Level(value, *mean_std(scores), len(scores)))
    return effects


def effect_range(levels: list[Level]) -> float:
    """How far apart a factor's level means lie: the largest minus the smallest."""
    means = [level.mean for level in levels]
    return max(means) - min(means)


def strongest(effects: dict[str, list[Level]], count: int = 2) -> list[str]:
    """The ``count`` factors with the largest :func:`effect_range`; ties keep sweep order."""
    return sorted(effects, key=lambda k: -effect_range(effects[k]))[:count]


def two_way(runs: list[Run], effects: dict[str, list[Level]], metric: str) -> Grid:
    """The :class:`Grid` of the two strongest factors, levels in the order of ``effects``."""
    rows, cols = strongest(effects)
    runs = measured(runs, metric)
    row_levels = [level.value for level in effects[rows]]
    col_levels = [level.value for level in effects[cols]]

    def scores(row: str, col: str) -> list[float]:
        return [
            r.metrics[metric]
            for r in runs
            if r.overrides.get(rows, "") == row and r.overrides.get(cols, "") == col
        ]

    cells = [[scores(row, col) for col in col_levels] for row in row_levels]
    means = [[mean_std(c)[0] if c else math.nan for c in line] for line in cells]
    counts = [[len(c) for c in line] for line in cells]
    return Grid(rows, cols, row_levels, col_levels, means, counts)
