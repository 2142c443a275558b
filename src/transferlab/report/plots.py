"""Plots for a sweep report: a bar per arm, learning curves, and the sample-efficiency curve."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.report.efficiency import SCRATCH, n_order, negative_transfer  # noqa: E402
from transferlab.report.runs import Arm, Run  # noqa: E402

CURVE_METRIC = "val/acc"


def bar_chart(arms: list[Arm], metric: str, path: Path) -> Path | None:
    """Horizontal bars: each arm's mean ``metric`` with its std as error bar."""
    arms = [a for a in arms if metric in a.stats]
    if not arms:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(arms) + 1.2))
    means = [a.stats[metric][0] for a in arms]
    stds = [a.stats[metric][1] for a in arms]
    ax.barh(range(len(arms)), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(range(len(arms)), [a.label for a in arms], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    for arm in arms:
        curves = [c for c in (learning_curve(r) for r in arm.runs) if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.fmean(c[e] for c in curves) for e in range(length)]
        ax.plot(range(1, length + 1), mean, marker="o", markersize=3, label=arm.label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{CURVE_METRIC} (mean over seeds)")
    if drawn <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_plots(runs: list[Run], arms: list[Arm], curves: dict, metric: str, out: Path):
    """Write every plot that the sweep has data for; return their paths."""

    plots = [bar_chart(arms, metric, out / "bars.png"), curves_chart(arms, out / "curves.png")]
    if SCRATCH in curves and len(curves) > 1:
        negatives = negative_transfer(curves)
        plots.append(efficiency_chart(curves, negatives, metric, out / "sample_efficiency.png"))
    return [p for p in plots if p is not None]
