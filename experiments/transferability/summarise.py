"""Summarise run.sh: mean ± std fine-tuned accuracy per candidate, each score beside it, the
weighted Kendall tau between each score and the accuracy, and ranking vs fine-tuning time.

    python experiments/transferability/summarise.py outputs/transferability
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from scipy.stats import weightedtau

SCORES = ("logme", "h_score", "transrate", "knn_acc", "leep", "nce")


def finetuned(out: Path) -> dict[str, dict]:
    """{candidate: {"acc": [test/acc per seed], "wall": seed-0 wall time}}."""
    found = {}
    for line in (out / "finetune_index.txt").read_text().splitlines():
        i, name = line.split("|", 1)
        runs = sorted((out / "finetune" / i).glob("[0-9]*/metrics.json"))
        metrics = [json.loads(p.read_text()) for p in runs]
        found[name] = {
            "acc": [m["test/acc"] for m in metrics],
            "wall": metrics[0]["time/wall_s"] if metrics else float("nan"),
        }
    return found


def main(out: Path) -> None:
    ranking = {r["name"]: r for r in csv.DictReader((out / "ranking" / "ranking.csv").open())}
    tuned = finetuned(out)
    names = [n for n in ranking if tuned.get(n, {}).get("acc")]
    acc = {n: statistics.mean(tuned[n]["acc"]) for n in names}
    lines = ["| candidate | test acc (3 seeds) | " + " | ".join(SCORES) + " |"]
    lines.append("|" + "---|" * (2 + len(SCORES)))
    for n in sorted(names, key=lambda n: -acc[n]):
        a = tuned[n]["acc"]
        cells = [
            f"{100 * statistics.mean(a):.1f} ± {100 * statistics.stdev(a):.1f}"
            if len(a) > 1
            else f"{100 * a[0]:.1f}"
        ]
        cells += [ranking[n][s] and f"{float(ranking[n][s]):.4g}" or "–" for s in SCORES]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "| score | weighted Kendall tau | candidates |", "|---|---|---|"]
    for s in SCORES:
        have = [n for n in names if ranking[n][s]]
        if len(have) < 3:
            continue
        tau = weightedtau([float(ranking[n][s]) for n in have], [acc[n] for n in have]).statistic
        lines.append(f"| {s} | {tau:.3f} | {len(have)} |")
    rank_wall = float((out / "rank_wall.txt").read_text().split()[1])
    tune_wall = sum(tuned[n]["wall"] for n in names)
    lines += [
        "",
        f"ranking {len(names)} candidates: {rank_wall:.1f} s; fine-tuning each once (seed 0): "
        f"{tune_wall:.1f} s; ratio {tune_wall / rank_wall:.1f}x",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    scatter(ranking, tuned, names, out / "scores_vs_accuracy.png")


def scatter(ranking: dict, tuned: dict, names: list[str], path: Path) -> None:
    """One panel per score: the score against fine-tuned test accuracy (mean ± std), labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for ax, score in zip(axes.flat, SCORES, strict=True):
        have = [n for n in names if ranking[n][score]]
        xs = [float(ranking[n][score]) for n in have]
        accs = [tuned[n]["acc"] for n in have]
        ys = [100 * statistics.mean(a) for a in accs]
        err = [100 * statistics.stdev(a) if len(a) > 1 else 0 for a in accs]
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3)
        for x, y, n in zip(xs, ys, have, strict=True):
            ax.annotate(n, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(score)
        ax.set_xlabel("score")
        ax.set_ylabel("fine-tuned test acc (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
