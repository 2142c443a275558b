"""The PEFT page's accuracy table: mean ± sample std of test accuracy over seeds, per arm and n,
from the multirun dirs of the page's commands; writes results_<name>.csv and bars_<name>.png
next to this file and prints the markdown table.

    .venv/bin/python experiments/peft/table.py vit outputs/multirun/peft_vit/*/
    .venv/bin/python experiments/peft/table.py resnet18 outputs/multirun/peft_resnet18*/
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ORDER = ["full", "feature_extraction", "lora_r4", "lora_r8", "lora_r16", "lora_r8_top6"]
ORDER += ["bitfit", "adapters"]


def runs(sweep_dirs: list[str]) -> list[dict]:
    """One row per finished job: arm, n, seed, test/val accuracy, trainable params."""
    rows = []
    for sweep in sweep_dirs:
        for job in sorted(Path(sweep).glob("*/")):
            metrics = job / "metrics.json"
            if not metrics.is_file():
                continue
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
            given = dict(o.split("=", 1) for o in overrides)
            config = yaml.safe_load((job / "config.yaml").read_text())
            strategy, arm = config["strategy"], given["strategy"]
            if arm == "lora":
                arm += f"_r{strategy['peft']['r']}"
            if strategy.get("peft") and strategy["trainable_groups"] != "all":
                arm += f"_top{strategy['trainable_groups']}"
            m = json.loads(metrics.read_text())
            rows.append(
                {
                    "arm": arm,
                    "n_per_class": int(config["data"]["n_per_class"]),
                    "seed": int(config["seed"]),
                    "test_acc": m["test/acc"],
                    "val_acc": m["val/acc"],
                    "trainable": int(m["params/trainable"]),
                    "total": int(m["params/total"]),
                }
            )
    return rows


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def markdown(rows: list[dict]) -> str:
    cells = defaultdict(list)
    params = {}
    for r in rows:
        cells[r["arm"], r["n_per_class"]].append(r["test_acc"])
        params[r["arm"]] = (r["trainable"], r["total"])
    ns = sorted({r["n_per_class"] for r in rows})
    head = "| arm | trainable params | " + " | ".join(f"test acc, n={n} (%)" for n in ns) + " |"
    lines = [head, "|---" * (2 + len(ns)) + "|"]
    for arm in [a for a in ORDER if a in params]:
        trainable, total = params[arm]
        accs = [
            f"{mean_std(cells[arm, n])} ({len(cells[arm, n])} seeds)" if cells[arm, n] else "–"
            for n in ns
        ]
        share = f"{trainable:,} ({100 * trainable / total:.2f}%)"
        lines.append(f"| {arm} | {share} | " + " | ".join(accs) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Test accuracy per arm (mean and sample std over seeds), one bar group per n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({r["n_per_class"] for r in rows})
    arms = [a for a in ORDER if any(r["arm"] == a for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / len(ns)
    for j, n in enumerate(ns):
        accs = [
            [100 * r["test_acc"] for r in rows if (r["arm"], r["n_per_class"]) == (a, n)]
            for a in arms
        ]
        means = [statistics.mean(a) if a else 0 for a in accs]
        stds = [statistics.stdev(a) if len(a) > 1 else 0 for a in accs]
        xs = [i + (j - (len(ns) - 1) / 2) * width for i in range(len(arms))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=f"n={n} per class")
    ax.set_xticks(range(len(arms)), arms, rotation=20)
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(20, color="grey", lw=0.8, ls=":")  # chance, 5 classes
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    name, sweeps = sys.argv[1], sys.argv[2:]
    rows = runs(sweeps)
    out = Path(__file__).parent / f"results_{name}.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["arm"], r["n_per_class"], r["seed"])))
    plot(rows, Path(__file__).parent / f"bars_{name}.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()
