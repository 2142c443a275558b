"""Tables and the E(n) plot of experiments/sample_efficiency/README.md from one
``experiment=sample_efficiency`` sweep: test accuracy per arm and n (mean ± std over seeds),
the steps each run used, the transfer gain over scratch per seed, where that gain falls below
2 points, and any negative transfer.

    .venv/bin/python experiments/sample_efficiency/summarise.py SWEEP_DIR [OUT_DIR]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

ARMS = ("scratch", "feature_extraction", "full")
ALL = 450  # images per class in the target's training pool (n = all)
GAIN_FLOOR = 2.0  # points


def load(sweep: Path) -> dict[tuple[str, int], dict[int, dict]]:
    """{(arm, n): {seed: metrics}} for every finished job."""
    found: dict[tuple[str, int], dict[int, dict]] = defaultdict(dict)
    for overrides in sorted(sweep.rglob(".hydra/overrides.yaml")):
        job = overrides.parent.parent
        if not (job / "metrics.json").is_file():
            continue
        o = dict(s.split("=", 1) for s in yaml.safe_load(overrides.read_text()))
        n = ALL if o["data.n_per_class"] == "null" else int(o["data.n_per_class"])
        found[(o["strategy"], n)][int(o["seed"])] = json.loads((job / "metrics.json").read_text())
    return found


def pm(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def acc(runs: dict[int, dict]) -> list[float]:
    return [100 * m["test/acc"] for _, m in sorted(runs.items())]


def tables(found) -> tuple[str, list[str]]:
    ns = sorted({n for _, n in found})
    lines = ["| n per class | " + " | ".join(ARMS) + " | gain of full over scratch (paired) |"]
    lines.append("|---|" + "---|" * (len(ARMS) + 1))
    findings = []
    below, paired_ns = None, []
    for n in ns:
        cells = [pm(acc(found[(a, n)])) if found.get((a, n)) else "–" for a in ARMS]
        full, scratch = found.get(("full", n), {}), found.get(("scratch", n), {})
        seeds = sorted(set(full) & set(scratch))
        gains = [100 * (full[s]["test/acc"] - scratch[s]["test/acc"]) for s in seeds]
        gain = f"{pm(gains)} ({len(gains)} seeds)" if gains else "–"
        if gains:
            paired_ns.append(n)
        if gains and below is None and statistics.mean(gains) < GAIN_FLOOR:
            below = n
        label = "all (450)" if n == ALL else str(n)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {gain} |")
        for arm in ("feature_extraction", "full"):
            if found.get((arm, n)) and scratch:
                if statistics.mean(acc(found[(arm, n)])) < statistics.mean(acc(scratch)):
                    findings.append(f"negative transfer: {arm} below scratch at n = {label}")
    if not paired_ns:
        findings.append("no n has both full fine-tuning and scratch runs yet")
    elif below is not None:
        findings.append(
            f"the gain of full fine-tuning over scratch falls below {GAIN_FLOOR:g} points at n = {below}"
        )
    else:
        done = ", ".join(str(n) for n in paired_ns)
        findings.append(
            f"the gain of full fine-tuning over scratch stays ≥ {GAIN_FLOOR:g} points at n = {done}"
        )
    return "\n".join(lines), findings


def steps_table(found) -> str:
    ns = sorted({n for _, n in found})
    lines = ["| n per class | " + " | ".join(f"{a}: steps run / best step" for a in ARMS) + " |"]
    lines.append("|---|" + "---|" * len(ARMS))
    for n in ns:
        cells = []
        for a in ARMS:
            runs = found.get((a, n), {})
            if not runs:
                cells.append("–")
                continue
            run = [int(m.get("steps/run", 0)) for m in runs.values()]
            best = [int(m.get("steps/best", 0)) for m in runs.values()]
            cells.append(f"{min(run)}–{max(run)} / {min(best)}–{max(best)}")
        lines.append(f"| {'all (450)' if n == ALL else n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(found, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm, colour in zip(ARMS, ("tab:grey", "tab:blue", "tab:orange"), strict=True):
        ns = sorted(n for a, n in found if a == arm)
        means = [statistics.mean(acc(found[(arm, n)])) for n in ns]
        stds = [
            statistics.stdev(acc(found[(arm, n)])) if len(found[(arm, n)]) > 1 else 0 for n in ns
        ]
        ax.plot(ns, means, "o-", color=colour, label=arm)
        ax.fill_between(
            ns, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
            color=colour, alpha=0.2,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted({n for _, n in found}))
    ax.set_xticklabels(
        [("all\n(450)" if n == ALL else str(n)) for n in sorted({n for _, n in found})]
    )
    ax.set_xlabel("labelled target images per class (n)")
    ax.set_ylabel("target test accuracy (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    sweep = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else sweep
    found = load(sweep)
    accuracy, findings = tables(found)
    text = "\n\n".join([accuracy, steps_table(found), "\n".join(f"- {f}" for f in findings)])
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    plot(found, out / "sample_efficiency.png")


if __name__ == "__main__":
    main()
