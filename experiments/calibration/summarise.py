"""Table and plot of the calibration study from its eval dirs.

    .venv/bin/python experiments/calibration/summarise.py outputs/calibration

Reads <dir>/<strategy>_s<seed>/eval/metrics.json (written by transferlab-eval
eval.calibrate=temperature), writes results.csv and ece.png beside this file and prints the
markdown table (mean ± sample std over seeds).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
STRATEGIES = ("feature_extraction", "full")
KEYS = (
    "test/acc",
    "val/ece",
    "val/ece_temperature",
    "test/ece",
    "test/ece_temperature",
    "calibration/temperature",
)


def read_runs(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*_s*/eval/metrics.json")):
        strategy, seed = path.parent.parent.name.rsplit("_s", 1)
        metrics = json.loads(path.read_text())
        rows.append({"strategy": strategy, "seed": int(seed), **{k: metrics[k] for k in KEYS}})
    return rows


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def main(root: Path) -> None:
    rows = read_runs(root)
    with open(HERE / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(
        "| strategy | seeds | test acc (%) | val ECE (%) | val ECE, T (%) | test ECE (%) "
        "| test ECE, T (%) | T |"
    )
    print("|---|---|---|---|---|---|---|---|")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, strategy in enumerate(STRATEGIES):
        runs = [r for r in rows if r["strategy"] == strategy]
        col = {k: [r[k] for r in runs] for k in KEYS}
        cells = [mean_std(col[k], 100) for k in KEYS[:-1]] + [mean_std(col[KEYS[-1]], 1, 2)]
        print(f"| {strategy} | {len(runs)} | " + " | ".join(cells) + " |")
        for j, (key, label) in enumerate(
            (("test/ece", "before"), ("test/ece_temperature", "after T"))
        ):
            values = [100 * v for v in col[key]]
            x = i + (j - 0.5) * 0.35
            ax.bar(
                x,
                statistics.mean(values),
                0.33,
                color=("tab:red", "tab:blue")[j],
                label=label if i == 0 else None,
                alpha=0.8,
            )
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(STRATEGIES)), STRATEGIES)
    ax.set_ylabel("test ECE (%)")
    ax.set_title("Test ECE before/after temperature scaling (bars: mean, dots: seeds)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "ece.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/calibration"))
