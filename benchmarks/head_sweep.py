"""Many heads in one pass: a 24-config head sweep with ``hydra/launcher=heads`` against one
feature-extraction run, and the same sweep with one Trainer per job (Hydra's basic launcher).

    python -m benchmarks.head_sweep                 # 2 interleaved repetitions, ~4 min
    python -m benchmarks.head_sweep --quick         # tiny backbone and data, a smoke run

Every arm is its own ``transferlab-train`` process with a cold feature cache, timed by its wall
clock (start-up, data, the backbone pass, training, evaluation, writing the run dirs), so the
ratio is what a user waits for. The basic-launcher sweep runs once, on one torch thread, which is
what the heads launcher trains its heads on: its jobs' metrics are then compared with the
heads launcher's, key by key. Writes ``outputs/bench/head_sweep.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import QUIET, ROOT, ratio

PROBE = ["strategy=feature_extraction", "backbone=resnet18"]  # the stage-1 backbone
QUICK = ["strategy=feature_extraction", "backbone=tiny", "backbone.weights=null", "data=synthetic"]
# lr x weight decay x head type (the MLP head has BatchNorm and dropout) x label smoothing
SWEEP = [
    "optimizer.lr=1e-3,3e-3,1e-2",
    "optimizer.weight_decay=0,1e-4",
    "head=linear,mlp",
    "loss.label_smoothing=0,0.1",
]
JOBS = math.prod(len(a.split("=", 1)[1].split(",")) for a in SWEEP)
GOAL = 2.0  # the 24-config sweep costs at most this many single feature-extraction runs


def train(args: list[str], work: Path, name: str, threads: int | None = None) -> float:
    """``transferlab-train`` with ``args`` and a fresh feature cache; returns its wall seconds."""
    cache = work / f"cache_{name}"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    flags = [a for a in args if a == "-m"]  # before the overrides, or argparse refuses them
    cmd = [sys.executable, "-m", "transferlab.train", *flags, *QUIET]
    cmd += [a for a in args if a != "-m"] + [f"paths.cache_dir={cache}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def sweep(base: list[str], work: Path, name: str, launcher: str | None, threads=None) -> float:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    choice = [f"hydra/launcher={launcher}"] if launcher else []
    seconds = train(["-m", *choice, *base, *SWEEP, f"hydra.sweep.dir={out}"], work, name, threads)
    if len(list(out.glob("*/metrics.json"))) != JOBS:
        raise RuntimeError(f"the sweep in {out} did not finish all {JOBS} jobs")
    return seconds


def job_metrics(sweep_dir: Path) -> dict[str, dict]:
    """{job's overrides: its metrics.json} of a sweep."""
    found = {}
    for job in sweep_dir.glob("*/metrics.json"):
        overrides = yaml.safe_load((job.parent / ".hydra" / "overrides.yaml").read_text())
        key = " ".join(sorted(o for o in overrides if not o.startswith("paths.")))
        found[key] = json.loads(job.read_text())
    return found


def compare(heads: dict[str, dict], alone: dict[str, dict]) -> dict:
    """How far the heads launcher's metrics are from the one-Trainer-per-job sweep's."""
    keys = [k for k in next(iter(alone.values())) if k.split("/")[0] in ("train", "val", "test")]
    diffs = [abs(heads[j][k] - alone[j][k]) for j in alone for k in keys]
    same = sum(heads[j][k] == alone[j][k] for j in alone for k in keys)
    acc = [abs(heads[j][k] - alone[j][k]) for j in alone for k in ("val/acc", "test/acc")]
    return {
        "jobs": len(alone),
        "metrics_per_job": len(keys),
        "identical_values": f"{same} of {len(diffs)}",
        "max_abs_difference": max(diffs),
        "max_accuracy_difference": max(acc),
    }


def run(work: Path, quick: bool, reps: int) -> dict:
    base = QUICK if quick else PROBE
    single_s, heads_s = [], []
    for rep in range(reps):  # interleaved: both arms see the same machine load
        single_s.append(train([*base, f"hydra.run.dir={work / 'single'}"], work, "single"))
        heads_s.append(sweep(base, work, "heads", "heads"))
        print(f"repetition {rep + 1}: single {single_s[-1]:.1f} s, heads {heads_s[-1]:.1f} s")
    basic_s = sweep(base, work, "basic", None, threads=1)
    one_thread_heads_s = sweep(base, work, "heads_1thread", "heads", threads=1)
    single, heads = statistics.median(single_s), statistics.median(heads_s)
    return {
        "config": " ".join(base),
        "sweep": " ".join(SWEEP),
        "jobs": JOBS,
        "single_run_s": single_s,
        "heads_sweep_s": heads_s,
        "ratio_heads_sweep_to_single": ratio(heads, single),
        "goal": f"<= {GOAL}",
        "met": ratio(heads, single) <= GOAL,
        "basic_sweep_1thread_s": basic_s,
        "heads_sweep_1thread_s": one_thread_heads_s,
        "speedup_over_basic_1thread": ratio(basic_s, one_thread_heads_s),
        "same_metrics": compare(job_metrics(work / "heads_1thread"), job_metrics(work / "basic")),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads_default": os.environ.get("OMP_NUM_THREADS", "all cores"),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
    }


def markdown(r: dict) -> str:
    same = r["same_metrics"]
    return "\n".join(
        [
            "| arm | wall time (s) | ratio |",
            "|---|---|---|",
            f"| one feature-extraction run | {', '.join(f'{s:.1f}' for s in r['single_run_s'])} | 1 |",
            f"| {r['jobs']}-config head sweep, `hydra/launcher=heads` | "
            f"{', '.join(f'{s:.1f}' for s in r['heads_sweep_s'])} | "
            f"**{r['ratio_heads_sweep_to_single']:.2f}×** (goal {r['goal']}) |",
            f"| the same sweep, one Trainer per job (basic launcher), 1 thread | "
            f"{r['basic_sweep_1thread_s']:.1f} | heads launcher at 1 thread "
            f"{r['heads_sweep_1thread_s']:.1f} s: {r['speedup_over_basic_1thread']:.1f}× faster |",
            "",
            f"Metrics, heads launcher vs one Trainer per job ({same['jobs']} jobs × "
            f"{same['metrics_per_job']} train/val/test metrics): {same['identical_values']} "
            f"identical, largest difference {same['max_abs_difference']:.2e}, accuracy "
            f"difference {same['max_accuracy_difference']:.2e}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone and data")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions per arm")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench")
    args = parser.parse_args()
    work = args.out / "head_sweep_work"
    work.mkdir(parents=True, exist_ok=True)
    results = run(work, args.quick, 1 if args.quick else args.reps)
    (args.out / "head_sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "head_sweep.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
