"""Plots for a sweep report: a bar per arm, learning curves, and the sample-efficiency curve."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.report.efficiency import SCRATCH, n_order, negative_transfer  # noqa: E402
from transferlab.report.labels import config_labels, keys_title  # noqa: E402
from transferlab.report.runs import Arm, Run  # noqa: E402

CURVE_METRIC = "val/acc"


def value_text(arm: Arm, metric: str) -> str:
    """The number printed on an arm's bar: mean ± std over its seeds, or the one run's value."""
    mean, std = arm.stats[metric]
    return f"{mean:.3f} ± {std:.3f}" if len(arm.runs) > 1 else f"{mean:.3f}"


def bar_chart(arms: list[Arm], metric: str, path: Path) -> Path | None:
    """Horizontal bars, best arm on top: each arm's mean ``metric``, its std over seeds as error
    bar, the value printed beside it, the arm named by its short label."""
    arms = [a for a in arms if metric in a.stats and not math.isnan(a.stats[metric][0])]
    if not arms:
        return None
    arms = sorted(arms, key=lambda a: -a.stats[metric][0])
    means = [a.stats[metric][0] for a in arms]
    stds = [a.stats[metric][1] for a in arms]
    seeded = any(len(a.runs) > 1 for a in arms)
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(arms) + 1.3))
    errors = stds if seeded else None
    ax.barh(range(len(arms)), means, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(range(len(arms)), config_labels(arms), fontsize=8)
    ax.invert_yaxis()
    tops = [m + s for m, s in zip(means, stds, strict=True)]
    low = min(0.0, *(m - s for m, s in zip(means, stds, strict=True)))
    span = (max(tops) - low) or 1.0
    for y, arm in enumerate(arms):
        ax.text(tops[y] + 0.01 * span, y, value_text(arm, metric), va="center", fontsize=8)
    ax.set_xlim(low, max(tops) + 0.22 * span)  # room for the printed values
    if keys_title(arms):  # above the labels it explains, flush with the picture's left edge
        fig.suptitle(keys_title(arms), x=0.01, ha="left", fontsize=9)
    spread = "mean ± std over seeds" if seeded else "one run per configuration"
    ax.set_xlabel(f"{metric} ({spread})")
    return save(fig, path)


def save(fig, path: Path) -> Path:
    """Write ``fig`` with every label inside the picture, and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curve(run: Run, metric: str = CURVE_METRIC) -> list[float]:
    """Per-epoch ``metric`` from the run's csv/metrics.csv (the fit loop's values only)."""
    path = run.dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    trained = {r["epoch"] for r in rows if r.get("train/loss_epoch")}
    by_epoch: dict[int, float] = {}
    for r in rows:
        # the validate() after fit logs once more at the next epoch index; skip it
        if r.get(metric) and r["epoch"] in trained:
            by_epoch.setdefault(int(r["epoch"]), float(r[metric]))
    return [by_epoch[e] for e in sorted(by_epoch)]


def curves_chart(arms: list[Arm], path: Path) -> Path | None:
    """Mean validation accuracy per epoch for each arm."""
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for arm, label in zip(arms, config_labels(arms), strict=True):
        curves = [c for c in (learning_curve(r) for r in arm.runs) if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.fmean(c[e] for c in curves) for e in range(length)]
        ax.plot(range(1, length + 1), mean, marker="o", markersize=3, label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{CURVE_METRIC} (mean over seeds)")
    if drawn <= 12:
        ax.legend(fontsize=7, title=keys_title(arms) or None, title_fontsize=7)
    return save(fig, path)


def efficiency_chart(curves: dict, negatives: list[tuple], metric: str, path: Path) -> Path:
    """E(n) per strategy on a log axis; ``null`` (all images) plotted last as "all"."""

    labels = sorted({n for points in curves.values() for n, *_ in points}, key=n_order)
    numeric = [float(n) for n in labels if n_order(n) != float("inf")]
    top = max(numeric, default=1.0)
    xs = {n: (float(n) if n_order(n) != float("inf") else top * 2.5) for n in labels}
    fig, ax = plt.subplots(figsize=(7, 4))
    for strategy, points in curves.items():
        x = [xs[n] for n, *_ in points]
        ax.errorbar(
            x,
            [m for _, m, _ in points],
            yerr=[s for *_, s in points],
            marker="o",
            capsize=3,
            label=strategy,
            linestyle="--" if strategy == "scratch" else "-",
        )
    for _strategy, n, mean, _ in negatives:
        ax.scatter([xs[n]], [mean], s=140, facecolors="none", edgecolors="red", linewidths=2)
    if negatives:
        ax.scatter([], [], s=140, facecolors="none", edgecolors="red", label="negative transfer")
    ax.set_xscale("log")
    ax.set_xticks(list(xs.values()), ["all" if n == "null" else n for n in labels])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class (n)")
    ax.set_ylabel(f"{metric} (mean ± std)")
    ax.legend(fontsize=8)
    return save(fig, path)


def save_plots(runs: list[Run], arms: list[Arm], curves: dict, metric: str, out: Path):
    """Write every plot that the sweep has data for; return their paths."""

    plots = [bar_chart(arms, metric, out / "bars.png"), curves_chart(arms, out / "curves.png")]
    if SCRATCH in curves and len(curves) > 1:
        negatives = negative_transfer(curves)
        plots.append(efficiency_chart(curves, negatives, metric, out / "sample_efficiency.png"))
    return [p for p in plots if p is not None]
