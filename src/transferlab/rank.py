"""Rank candidate backbones before training any: ``transferlab-rank [overrides]``.

Overrides of the rank config (``candidates``, ``knn_k``, ``sort_by``, ``out``) set the ranking;
every other override (``data=digits``, ``data.n_per_class=20``, ...) picks the target data as for
``transferlab-train``. Each candidate's features go through the feature cache, so a later
``strategy=feature_extraction`` run on the same backbone and data starts from them.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import torch

from transferlab.build import build_experiment, load_module
from transferlab.config import compose
from transferlab.errors import ConfigError, run_or_explain
from transferlab.ranking import rank_candidate, ranking_table, write_ranking

log = logging.getLogger("transferlab")
# the keys of the rank config (conf/rank.yaml and its candidate_set group)
RANK_KEYS = {"candidates", "candidate_set", "knn_k", "sort_by", "out"}
# a candidate's backbone is seen frozen and unaugmented, as a feature-extraction run sees it
FROZEN = ["strategy=feature_extraction", "augmentation=none", "print_config=false", "logger=none"]


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(overrides of the rank config, overrides of each candidate's train config)."""
    ours = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in RANK_KEYS]
    return ours, [o for o in overrides if o not in ours]


def candidate_parts(overrides: list[str], out: Path):
    """(module, feature cache) of one candidate, built exactly as a feature-extraction train
    run builds them (same seed, same cache key), so that run later reuses these features."""
    run = build_experiment(compose([*overrides, *FROZEN], run_dir=out))  # writes nothing there
    if run.features is None:
        raise ConfigError(
            "A candidate's overrides make its backbone features change during training (they "
            "set a strategy, augmentation or dropout); list only backbone and data settings."
        )
    run.module.to("cuda" if torch.cuda.is_available() else "cpu")
    return run.module, run.features


def source_model(path: str | None, device: torch.device):
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(
            f"The candidate's source_ckpt {path} does not exist; run its stage 1 "
            "(`make pretrain` for resnet18) or set its source_ckpt to null."
        )
    return load_module(path)[0].to(device)


def rank(overrides: list[str]) -> list:
    ours, target = split_overrides(overrides)
    cfg = compose(ours, "rank")
    if not cfg.candidates:
        raise ConfigError("candidates is empty; list at least one backbone to rank.")
    ranked = []
    for i, candidate in enumerate(cfg.candidates, 1):
        module, cache = candidate_parts([*candidate.overrides, *target], Path(cfg.out))
        n = len(cfg.candidates)
        log.info(
            "[%d/%d] %s: one frozen pass over the target training images", i, n, candidate.name
        )
        source = source_model(candidate.get("source_ckpt"), module.device)
        ranked.append(rank_candidate(candidate.name, cache, source=source, knn_k=cfg.knn_k))
        log.info("[%d/%d] %s: scored in %.1f s", i, n, candidate.name, ranked[-1].seconds)
    command = " ".join(["transferlab-rank", *map(shlex.quote, overrides)])
    written = write_ranking(ranked, Path(cfg.out), command, by=cfg.sort_by)
    print("\n".join(ranking_table(ranked, cfg.sort_by)))
    print(f"ranking written to {written[0].parent}")
    return ranked


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_or_explain(rank, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
