"""The table of experiments/defaults/README.md from the sweeps of run.sh: every recipe's
validation accuracy (mean ± std over seeds), best first per strategy; test accuracy is shown
beside it but chooses nothing.

    .venv/bin/python experiments/defaults/summarise.py [SWEEP_ROOT]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/multirun/defaults")
# what a recipe is: these keys at their defaults unless a sweep set them
KNOBS = {
    "strategy.backbone_lr_mult": None,
    "optimizer.lr": "0.001",
    "strategy.precise_bn": "false",
    "strategy.bn": "frozen",
    "loss.label_smoothing": "0.0",
    "trainer.max_epochs": "20",
}
SHORT = {
    "strategy.backbone_lr_mult": "mult",
    "optimizer.lr": "lr",
    "strategy.precise_bn": "precise_bn",
    "strategy.bn": "bn",
    "loss.label_smoothing": "smoothing",
    "trainer.max_epochs": "epochs",
}


def runs(root: Path):
    for overrides in sorted(root.glob("*/*/.hydra/overrides.yaml")):
        job = overrides.parent.parent
        if not (job / "metrics.json").is_file():
            continue
        o = dict(s.split("=", 1) for s in yaml.safe_load(overrides.read_text()))
        m = json.loads((job / "metrics.json").read_text())
        yield o, m


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main() -> None:
    recipes: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o, m in runs(ROOT):
        key = (o["strategy"], *(o.get(k, d) for k, d in KNOBS.items()))
        recipes[key]["val"].append(m["val/acc"])
        recipes[key]["test"].append(m["test/acc"])
    print("| strategy | recipe | seeds | val acc | test acc |")
    print("|---|---|---|---|---|")
    for strategy in sorted({k[0] for k in recipes}):
        mine = [(k, v) for k, v in recipes.items() if k[0] == strategy]
        mine.sort(key=lambda kv: -statistics.mean(kv[1]["val"]))
        for i, (key, v) in enumerate(mine):
            parts = [
                f"{SHORT[k]} {x}" for k, x in zip(KNOBS, key[1:], strict=True) if x is not None
            ]
            best = "**" if i == 0 else ""
            print(
                f"| {strategy} | {best}{', '.join(parts)}{best} | {len(v['val'])} | "
                f"{mean_std(v['val'])} | {mean_std(v['test'])} |"
            )


if __name__ == "__main__":
    main()
