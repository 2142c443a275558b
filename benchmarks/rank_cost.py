"""What ranking saves: ``transferlab-rank`` over 6 candidate backbones against fine-tuning the
same 6 once each with the default recipe (``strategy=full``, 10 epochs), on the default target
task; writes ``outputs/bench/rank_cost.json``.

    .venv/bin/python -m benchmarks.rank_cost            # about 6 minutes on 2 CPU cores
    .venv/bin/python -m benchmarks.rank_cost --quick    # 2 tiny candidates, 1 epoch

Every run is its own process, timed from outside (start-up included on both sides); the
ranking runs before and after the fine-tuning jobs, so a change of the machine's load shows as
a difference between its two times. Each fine-tuning job's own ``time/wall_s`` (start-up
excluded) is kept too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

from benchmarks.common import QUIET, ROOT, timed
from benchmarks.feature_cache import transferlab_train
from transferlab import compose

CANDIDATES = "candidate_set=offline6"
QUICK = ["data=synthetic", "trainer.max_epochs=1"]


def candidates(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, overrides) of each candidate; quick: the random-init test_resnet and ResNet-18."""
    found = [(c.name, list(c.overrides)) for c in compose([CANDIDATES], "rank").candidates]
    return [found[-1], found[1]] if quick else found


def rank_seconds(work: Path, data: list[str], tag: str) -> float:
    """Wall seconds of one ``transferlab-rank`` process over the candidates, on a fresh cache."""
    cache = work / f"cache_{tag}"
    shutil.rmtree(cache, ignore_errors=True)  # the ranking pays its forward passes
    args = [CANDIDATES, f"out={work / f'ranking_{tag}'}", f"paths.cache_dir={cache}", *data]
    return timed(["-m", "transferlab.rank", *args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 tiny candidates, 1 epoch")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench"))
    args = parser.parse_args()
    work = Path(args.out) / "work" / "rank_cost"
    data = QUICK if args.quick else []
    loads = [os.getloadavg()[0]]
    before = rank_seconds(work, data, "before")
    jobs = []
    for i, (name, overrides) in enumerate(candidates(args.quick)):
        run_dir = work / f"finetune_{i}"
        wall = transferlab_train(
            [*overrides, *data, "seed=0", f"hydra.run.dir={run_dir}"], work / "finetune_cache"
        )
        metrics = json.loads((run_dir / "metrics.json").read_text())
        jobs.append({"name": name, "wall_s": wall, "run_s": metrics["time/wall_s"]})
    loads.append(os.getloadavg()[0])
    after = rank_seconds(work, data, "after")
    finetune = sum(j["wall_s"] for j in jobs)
    result = {
        "candidates": len(jobs),
        "config": " ".join([CANDIDATES, *data, *QUIET]),
        "load_avg_1min": loads,
        "rank_wall_s": [before, after],
        "finetune_jobs": jobs,
        "finetune_wall_s": finetune,
        "finetune_run_s": sum(j["run_s"] for j in jobs),
        # the ranking's two runs bound the ratio: they saw the load before and after the jobs
        "ratio": finetune / statistics.mean([before, after]),
        "ratio_range": [finetune / max(before, after), finetune / min(before, after)],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rank_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
