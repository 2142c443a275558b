"""Recommend a transfer recipe before training: ``transferlab-advise [overrides]``.

Ranks the candidate backbones (as ``transferlab-rank``), measures the labelled images per class
and the proxy A-distance between source and target features of the best one, and prints the
decision table's recommendation as one ``transferlab-train`` line; ``confirm=true`` trains it
and its runner-up for ``confirm_epochs`` epochs and compares them on validation.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from transferlab.advice import proxy_a_distance, recommend
from transferlab.config import compose
from transferlab.errors import run_or_explain
from transferlab.files import write_text_atomic
from transferlab.rank import candidate_parts, rank
from transferlab.ranking import ordered

log = logging.getLogger("transferlab")
ADVISE_KEYS = {"candidates", "candidate_set", "knn_k", "sort_by", "out"}
ADVISE_KEYS |= {"source", "confirm", "confirm_epochs"}
RANK_KEYS = ("candidates", "candidate_set", "knn_k", "sort_by")


def advise(overrides: list[str]) -> dict:
    ours = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in ADVISE_KEYS]
    target = [o for o in overrides if o not in ours]
    cfg = compose(ours, "advise")
    out = Path(cfg.out)
    passed = [o for o in ours if o.lstrip("+~").split("=")[0].split(".")[0] in RANK_KEYS]
    ranked = rank([*passed, f"out={out / 'ranking'}", *target])
    best = ordered(ranked, cfg.sort_by)[0]
    chosen = next(c for c in cfg.candidates if c.name == best.name)
    module, target_cache = candidate_parts([*chosen.overrides, *target], out)
    # the source domain: its own data settings, the target's other settings (trainer, paths)
    shared = [o for o in target if not o.lstrip("+~").startswith("data")]
    _, source_cache = candidate_parts([*chosen.overrides, *shared, *cfg.source], out)
    target_x, target_y = target_cache["train"]
    per_class = len(target_y) / len(target_y.unique())
    pad = proxy_a_distance(source_cache["train"][0], target_x)
    advice = recommend(per_class, pad)
    line = shlex.join(["transferlab-train", *chosen.overrides, *target, *advice.overrides])
    text = [
        f"best-ranked backbone: {best.name} ({cfg.sort_by} {best.scores[cfg.sort_by]:.4g})",
        f"recommended: {advice.strategy}, because {advice.reason}",
        f"  {line}",
    ]
    result = {"advice": advice, "command": line, "per_class": per_class, "pad": pad}
    if cfg.confirm:
        result["confirmed"] = confirm(cfg, chosen.overrides, target, advice, out)
        text += [f"  {name}: val/acc {acc:.4f}" for name, acc in result["confirmed"].items()]
        winner = max(result["confirmed"], key=result["confirmed"].get)
        text.append(f"on validation after {cfg.confirm_epochs} epochs, {winner} wins")
    write_text_atomic(out / "advice.md", "\n".join(["# Advice", "", *text]) + "\n")
    print("\n".join(text))
    return result


def confirm(cfg, backbone: list[str], target: list[str], advice, out: Path) -> dict[str, float]:
    """val/acc of the recommendation and its runner-up after ``confirm_epochs`` epochs."""
    from transferlab.train import train

    scores = {}
    for name, extra in (
        (advice.strategy, advice.overrides),
        (advice.runner_up, advice.runner_up_overrides),
    ):
        job = [*backbone, *target, *extra, f"trainer.max_epochs={cfg.confirm_epochs}"]
        metrics = train(compose([*job, "print_config=false"], run_dir=out / "confirm" / name))
        scores[name] = metrics["val/acc"]
    return scores


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_or_explain(advise, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
