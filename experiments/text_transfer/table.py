"""The text-transfer page's tables and plot from the runs of run.sh: mean ± sample std over seeds
per arm (framework and plain loop), E(n), throughput; writes results.csv and text_transfer.png
next to this file and prints the markdown tables.

    python experiments/text_transfer/table.py outputs/text_transfer
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLARITY = [
    ("scratch", "scratch (same architecture, random init)"),
    ("fe", "feature extraction (linear probe)"),
    ("full", "full fine-tuning"),
    ("layer_decay", "layer-wise LR decay 0.95"),
    ("gradual_unfreeze", "gradual unfreezing"),
    ("prompt_tuning", "prompt tuning (10 virtual tokens)"),
]
PLAIN = [("fe", "plain loop: frozen encoder + linear head"), ("full", "plain loop: full")]
PLAIN += [("logreg", "logistic regression on frozen embeddings")]


def framework_runs(root: Path, arm: str, with_seed: bool = False) -> list[dict]:
    runs = []
    for path in sorted(root.glob(f"{arm}/s*/metrics.json")):
        run = json.loads(path.read_text())
        runs.append({**run, "seed": int(path.parent.name[1:])} if with_seed else run)
    return runs


def plain_runs(root: Path, task: str, arm: str, n: int = 1000) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted(root.glob(f"plain/{task}_{arm}_n{n}_s*.json"))
    ]


def ms(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return "—"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def row(name: str, runs: list[dict], keys: list[tuple[str, float, int]], rows: list) -> str:
    cells = [ms([r[k] for r in runs if k in r], s, d) for k, s, d in keys]
    trainable = runs[0].get("params/trainable") if runs else None
    wall = [r["time/wall_s"] for r in runs if "time/wall_s" in r]
    cells += [f"{int(trainable):,}" if trainable else "—", ms(wall, 1.0, 0)]
    named = dict(zip([k for k, _, _ in keys], cells[: len(keys)], strict=True))
    rows.append({"arm": name, "seeds": len(runs), **named})
    return f"| {name} | {len(runs)} | " + " | ".join(cells) + " |"


def polarity_table(root: Path, rows: list) -> list[str]:
    keys = [("test/acc", 100, 1), ("test/f1", 100, 1)]
    out = ["| arm | seeds | test acc % | test macro-F1 % | trainable params | wall s |"]
    out.append("|---|---|---|---|---|---|")
    for arm, name in POLARITY:
        out.append(row(name, framework_runs(root, arm), keys, rows))
    for arm, name in PLAIN:
        out.append(row(name, plain_runs(root, "polarity", arm), keys, rows))
    return out


def paired_gaps(root: Path) -> list[str]:
    """Framework minus plain loop, seed by seed (each seed has its own split), in points."""
    out = ["| arm | framework − plain loop, test acc points (per seed) | mean |", "|---|---|---|"]
    for arm, plain_arm in (("fe", "fe"), ("full", "full"), ("fe", "logreg")):
        fw = {r["seed"]: r["test/acc"] for r in framework_runs(root, arm, with_seed=True)}
        pl = {r["seed"]: r["test/acc"] for r in plain_runs(root, "polarity", plain_arm)}
        gaps = [100 * (fw[s] - pl[s]) for s in sorted(fw.keys() & pl.keys())]
        if gaps:
            cells = ", ".join(f"{g:+.1f}" for g in gaps)
            out.append(f"| {arm} vs plain {plain_arm} | {cells} | {statistics.mean(gaps):+.1f} |")
    return out


def valence_table(root: Path, rows: list) -> list[str]:
    keys = [("test/mae", 1, 3), ("test/spearman", 1, 3)]
    out = ["| arm | seeds | test MAE | test Spearman | trainable params | wall s |"]
    out.append("|---|---|---|---|---|---|")
    for arm, name in (("valence_fe", "feature extraction"), ("valence_full", "full fine-tuning")):
        out.append(row(name, framework_runs(root, arm), keys, rows))
    return out


def sample_efficiency(root: Path) -> dict[str, dict[int, list[float]]]:
    curves = {}
    for arm in ("fe", "full", "scratch"):
        curves[arm] = {}
        for n in (100, 300, 1000):
            runs = framework_runs(root, arm if n == 1000 else f"{arm}_n{n}")
            if runs:
                curves[arm][n] = [r["test/acc"] for r in runs]
    return {a: c for a, c in curves.items() if c}


def plot(root: Path, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, en) = plt.subplots(1, 2, figsize=(11, 4))
    names, means, stds = [], [], []
    arms = [(a, n, framework_runs(root, a)) for a, n in POLARITY]
    arms += [(a, n, plain_runs(root, "polarity", a)) for a, n in PLAIN]
    for _arm, name, runs in arms:
        if runs:
            acc = [100 * r["test/acc"] for r in runs]
            names.append(name.split(" (")[0])
            means.append(statistics.mean(acc))
            stds.append(statistics.stdev(acc) if len(acc) > 1 else 0)
    bars.barh(names[::-1], means[::-1], xerr=stds[::-1], color="tab:blue")
    bars.set_xlabel("test accuracy % (vader_polarity, 1,000 training texts)")
    for arm, points in curves.items():
        ns = sorted(points)
        en.errorbar(
            ns,
            [100 * statistics.mean(points[n]) for n in ns],
            yerr=[100 * statistics.stdev(points[n]) if len(points[n]) > 1 else 0 for n in ns],
            marker="o",
            capsize=3,
            label={"fe": "feature extraction", "full": "full fine-tuning"}.get(arm, arm),
        )
    en.set_xscale("log")
    en.set_xlabel("training texts n")
    en.set_ylabel("test accuracy %")
    en.set_title("E(n): transfer vs scratch")
    en.legend()
    fig.tight_layout()
    fig.savefig(HERE / "text_transfer.png", dpi=110)


def main() -> None:
    root = Path(sys.argv[1])
    rows: list[dict] = []
    print("\n".join(polarity_table(root, rows)), "\n")
    print("\n".join(paired_gaps(root)), "\n")
    print("\n".join(valence_table(root, rows)), "\n")
    curves = sample_efficiency(root)
    print("| n | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for n in (100, 300, 1000):
        print(f"| {n} | " + " | ".join(ms(c.get(n, []), 100) for c in curves.values()) + " |")
    speed = root / "throughput.json"
    if speed.is_file():
        result = json.loads(speed.read_text())
        print("\nthroughput (seq/s):", result["median_seq_per_s"], f"ratio {result['ratio']:.3f}")
    with (HERE / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    plot(root, curves)


if __name__ == "__main__":
    main()
