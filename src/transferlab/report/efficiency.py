"""Sample efficiency from a sweep over n per class: E(n) per strategy and negative transfer."""

from __future__ import annotations

from transferlab.report.runs import Arm

N_KEY = "data.n_per_class"
SCRATCH = "scratch"


def n_order(label: str) -> float:
    """Sort key for n per class: numbers ascending, ``null`` (all images) last."""
    return float(label) if label.replace(".", "", 1).isdigit() else float("inf")


def sample_efficiency(arms: list[Arm], metric: str) -> dict[str, list[tuple[str, float, float]]]:
    """{strategy: [(n, mean, std), ...]} when the sweep varies n per class and strategy."""
    if not arms or not {N_KEY, "strategy"} <= set(arms[0].choices):
        return {}
    curves: dict[str, list[tuple[str, float, float]]] = {}
    for arm in arms:
        if metric in arm.stats:
            point = (arm.choices[N_KEY], *arm.stats[metric])
            curves.setdefault(arm.choices["strategy"], []).append(point)
    return {s: sorted(points, key=lambda p: n_order(p[0])) for s, points in curves.items()}


def negative_transfer(curves: dict[str, list[tuple[str, float, float]]]) -> list[tuple]:
    """(strategy, n, transfer mean, scratch mean) wherever a transfer arm is below scratch."""
    scratch = {n: mean for n, mean, _ in curves.get(SCRATCH, [])}
    return [
        (strategy, n, mean, scratch[n])
        for strategy, points in curves.items()
        if strategy != SCRATCH
        for n, mean, _ in points
        if n in scratch and mean < scratch[n]
    ]
