"""Pictures of a factorial sweep: one main-effects panel per factor, and the heatmap of the two
strongest factors (see :mod:`~transferlab.report.factors`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.report.factors import HEATMAP_PNG, MAIN_EFFECTS_PNG, Grid, Level, two_way  # noqa: E402
from transferlab.report.labels import short_levels  # noqa: E402
from transferlab.report.plots import save  # noqa: E402
from transferlab.report.runs import Run  # noqa: E402


def level_ticks(ax, values: list[str], axis: str = "x") -> None:
    """Short level names as tick labels, slanted when they would run into each other."""
    shorts = short_levels(values)
    labels = [shorts[v] for v in values]
    # a panel is about 25 characters of 8-point text wide
    crowded = axis == "x" and (sum(map(len, labels)) + 2 * len(labels) > 30)
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(range(len(labels)), labels, fontsize=8)
    if crowded:
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")


def effect_panel(ax, factor: str, levels: list[Level], grand_mean: float) -> None:
    """One factor: a point per level at its mean, std as error bar, the values printed right of
    it (no line between the points, so the values stay clear)."""
    xs = range(len(levels))
    means = [level.mean for level in levels]
    ax.axhline(grand_mean, color="grey", linestyle=":", linewidth=1, label="mean of all runs")
    ax.errorbar(
        xs, means, yerr=[level.std for level in levels], marker="o", capsize=4, linestyle="none"
    )
    for x, level in zip(xs, levels, strict=True):
        text = f"{level.mean:.3f}\n± {level.std:.3f}"
        offset = {"xytext": (5, 0), "textcoords": "offset points"}
        ax.annotate(text, (x, level.mean), **offset, fontsize=7, va="center")
    level_ticks(ax, [level.value for level in levels])
    ax.set_xlim(-0.4, len(levels) - 0.1)  # room right of the last point for its value
    ax.set_title(factor, fontsize=9)


def main_effects_chart(effects: dict[str, list[Level]], metric: str, path: Path) -> Path:
    """A panel per factor, all on one y axis; the dotted line is the mean of all runs."""
    levels = next(iter(effects.values()))
    grand_mean = sum(level.mean * level.n for level in levels) / sum(level.n for level in levels)
    fig, axes = plt.subplots(
        1, len(effects), figsize=(2.1 * len(effects) + 0.9, 3.4), sharey=True, squeeze=False
    )
    for ax, (factor, factor_levels) in zip(axes[0], effects.items(), strict=True):
        effect_panel(ax, factor, factor_levels, grand_mean)
    axes[0][0].set_ylabel(f"{metric} (mean ± std over runs)")
    axes[0][0].legend(fontsize=7, loc="best", frameon=False)
    return save(fig, path)


def heatmap_chart(grid: Grid, metric: str, path: Path) -> Path:
    """Mean ``metric`` per cell of two factors, the value and run count printed in each."""
    width, height = len(grid.col_levels), len(grid.row_levels)
    fig, ax = plt.subplots(figsize=(1.2 * width + 2.6, 0.8 * height + 1.6))
    image = ax.imshow(grid.means, cmap="viridis", aspect="auto")
    known = [m for line in grid.means for m in line if not math.isnan(m)]
    middle = (min(known) + max(known)) / 2
    for i, line in enumerate(grid.means):
        for j, mean in enumerate(line):
            text = "–" if math.isnan(mean) else f"{mean:.3f}\nn={grid.counts[i][j]}"
            color = "white" if mean < middle else "black"  # NaN cells are blank: black
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    level_ticks(ax, grid.col_levels)
    level_ticks(ax, grid.row_levels, axis="y")
    ax.set_xlabel(grid.cols)
    ax.set_ylabel(grid.rows)
    fig.colorbar(image, ax=ax, label=f"mean {metric}")
    return save(fig, path)


def save_factor_plots(runs: list[Run], effects: dict[str, list[Level]], metric: str, out: Path):
    """Write main_effects.png and heatmap.png when the sweep has two factors or more."""
    if not effects:
        return []
    grid = two_way(runs, effects, metric)
    return [
        main_effects_chart(effects, metric, out / MAIN_EFFECTS_PNG),
        heatmap_chart(grid, metric, out / HEATMAP_PNG),
    ]
