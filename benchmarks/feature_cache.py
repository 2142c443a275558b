"""(b) Feature cache: ``transferlab-train strategy=feature_extraction`` for 10 epochs with
``strategy.cache_features=true`` against ``false``, and a 6-job head sweep with and without it.

Each run is its own ``transferlab-train`` process; the time is the process's wall clock, so it
holds everything a user waits for (start-up, data, the backbone passes, evaluation).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from pathlib import Path

from benchmarks.common import ratio, timed
from benchmarks.overhead import TIMER

# the stage-1 source backbone (`make pretrain`): a random one gives chance-level probes
PROBE = ["strategy=feature_extraction", "backbone=resnet18"]
QUICK = ["strategy=feature_extraction", "backbone=tiny", "backbone.weights=null", "data=synthetic"]
# 6 jobs over head settings: LR x head type (the MLP head has dropout); label smoothing on
SWEEP = ["optimizer.lr=1e-3,3e-3,1e-2", "head=linear,mlp", "loss.label_smoothing=0.1"]
SWEEP_JOBS = math.prod(len(arg.split("=", 1)[1].split(",")) for arg in SWEEP)


def transferlab_train(args: list[str], cache_dir: Path, multirun: bool = False) -> float:
    """Run ``transferlab-train`` with ``args``; returns its wall-clock seconds."""
    flags = ["-m"] if multirun else []
    return timed(["-m", "transferlab.train", *flags, *args, f"paths.cache_dir={cache_dir}"])


def single(base: list[str], epochs: int, cached: bool, work: Path) -> dict:
    run_dir = work / f"cache_{str(cached).lower()}"
    cache_dir = work / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # the cached run pays for building it
    wall = transferlab_train(
        [
            *base,
            f"trainer.max_epochs={epochs}",
            f"strategy.cache_features={str(cached).lower()}",
            f"hydra.run.dir={run_dir}",
            *TIMER,
        ],
        cache_dir,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "train_s": metrics["time/wall_s"],
        # fit: the epochs, their validation and the checkpoint writes; cached, it also holds
        # the one-off train and validation feature pass
        "fit_s": json.loads((run_dir / "step_times.json").read_text())["fit_s"],
        "feature_pass_s": metrics.get("time/feature_pass_s", 0.0),  # every split, test too
        "test_acc": metrics["test/acc"],
    }


def sweep(base: list[str], epochs: int, cached: bool, work: Path) -> float:
    cache_dir = work / "sweep_cache"
    sweep_dir = work / f"sweep_{str(cached).lower()}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    shutil.rmtree(sweep_dir, ignore_errors=True)
    seconds = transferlab_train(
        [
            *base,
            f"trainer.max_epochs={epochs}",
            f"strategy.cache_features={str(cached).lower()}",
            *SWEEP,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cache_dir,
        multirun=True,
    )
    # a sweep survives failing jobs; a benchmark over failed jobs would time nothing real
    failed = sorted(sweep_dir.glob("*/failure.json"))
    if failed or len(list(sweep_dir.glob("*/metrics.json"))) != SWEEP_JOBS:
        raise RuntimeError(f"sweep jobs failed: {failed[0].read_text()[:2000] if failed else ''}")
    return seconds


def run(
    work: Path, quick: bool = False, epochs: int = 10, reps: int = 3, sweeps: bool = True
) -> dict:
    """``reps`` interleaved pairs of uncached and cached 10-epoch runs, then (with ``sweeps``)
    the two sweeps.

    The fit ratio is reported per pair (both runs of a pair see about the same load) and as
    their median; the load average is recorded before each pair.
    """
    base = QUICK if quick else PROBE
    epochs, reps = (2, 1) if quick else (epochs, reps)
    pairs = []
    for rep in range(reps):
        load = os.getloadavg()[0]
        off = single(base, epochs, False, work / f"rep{rep}")
        on = single(base, epochs, True, work / f"rep{rep}")
        pairs.append({"load_avg_1min": load, "uncached": off, "cached": on})
    ratios = [ratio(p["uncached"]["fit_s"], p["cached"]["fit_s"]) for p in pairs]
    mid = pairs[sorted(range(reps), key=ratios.__getitem__)[reps // 2]]  # the median pair
    off, on = mid["uncached"], mid["cached"]
    out = {
        "config": " ".join(base) + f" trainer.max_epochs={epochs}",
        "pairs": pairs,
        "uncached": off,
        "cached": on,
        "speedup_wall": ratio(off["wall_s"], on["wall_s"]),
        "speedup_train": ratio(off["train_s"], on["train_s"]),
        # the training loop (10 epochs + their validation), the feature pass inside it
        "speedup_fit": statistics.median(ratios),
        "speedup_fit_per_pair": ratios,
        "acc_diff_points": max(
            abs(100 * (p["cached"]["test_acc"] - p["uncached"]["test_acc"])) for p in pairs
        ),
        "goal": f"speedup >= {0.8 * epochs:.0f} (0.8 E), accuracy within 0.5 point",
    }
    if sweeps:
        sweep_off, sweep_on = sweep(base, epochs, False, work), sweep(base, epochs, True, work)
        out.update(sweep=" ".join(SWEEP), sweep_uncached_s=sweep_off, sweep_cached_s=sweep_on)
        out["sweep_speedup"] = ratio(sweep_off, sweep_on)
    return out
