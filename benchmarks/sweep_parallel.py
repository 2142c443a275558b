"""Wall time of one N-job sweep run one job at a time (basic launcher) and on k parallel slots.

    python -m benchmarks.sweep_parallel --jobs 6 --slots 2              # about 6 minutes
    python -m benchmarks.sweep_parallel --launcher ray                  # the same on Ray
    python -m benchmarks.sweep_parallel --jobs 4 --epochs 2 --samples 1024   # short jobs

Every job uses one CPU thread (OMP_NUM_THREADS=1) under every launcher, so one slot is one core
and the ideal parallel time is sequential / k. Prints both times,
ratio = parallel / (sequential / k) (the target is at most 1.15), and the fixed cost of the
parallel sweep: its wall time minus the busiest slot's share of the jobs' own wall times (worker
start-up and imports, Ray's daemons under ``--launcher ray``, shutdown). That cost is paid once per sweep, so the ratio
depends on how long the jobs are; the defaults give jobs of about a minute and a half on one
core. Writes ``outputs/bench/sweep_parallel.json``. The machine's load average is printed
before and after: other work on the machine disturbs the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = [
    "backbone=tiny",
    "backbone.weights=null",
    "data=synthetic",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "print_config=false",
    "logger=none",
]


def timed_sweep(root: Path, job: list[str], seeds: str, launcher: list[str]) -> dict:
    """Run the sweep; its wall seconds and the jobs' own wall seconds (``time/wall_s``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "transferlab.train", "-m", *job, f"seed={seeds}", *launcher]
    cmd += [f"paths.root_dir={root}", f"hydra.sweep.dir={root / 'sweep'}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    jobs = [json.loads(p.read_text())["time/wall_s"] for p in root.glob("sweep/*/metrics.json")]
    failed = sorted(str(p.parent) for p in root.glob("sweep/*/failure.json"))
    if failed or len(jobs) != seeds.count(",") + 1:
        raise RuntimeError(f"sweep jobs failed, the timing would mean nothing: {failed}")
    return {"wall_s": round(wall, 1), "job_wall_s": jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per job")
    parser.add_argument("--samples", type=int, default=4096, help="synthetic images per job")
    parser.add_argument("--launcher", choices=("parallel", "ray"), default="parallel")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs/bench/sweep_parallel.json")
    args = parser.parse_args()
    job = [*JOB, f"trainer.max_epochs={args.epochs}", f"data.num_samples={args.samples}"]
    seeds = ",".join(str(s) for s in range(args.jobs))
    launcher = {
        "parallel": ["hydra/launcher=parallel", f"hydra.launcher.slots={args.slots}"],
        "ray": ["hydra/launcher=ray", f"hydra.launcher.ray.init.num_cpus={args.slots}"],
    }[args.launcher]
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        sequential = timed_sweep(Path(tmp) / "basic", job, seeds, [])
        parallel = timed_sweep(Path(tmp) / args.launcher, job, seeds, launcher)
    load_after = os.getloadavg()
    print(f"load average after:  {load_after}")
    ratio = parallel["wall_s"] / (sequential["wall_s"] / args.slots)
    busiest_slot = sum(parallel["job_wall_s"]) / args.slots
    fixed = parallel["wall_s"] - busiest_slot
    print(f"{args.jobs} jobs, one at a time: {sequential['wall_s']:.1f} s")
    print(f"{args.jobs} jobs on {args.slots} {args.launcher} slots: {parallel['wall_s']:.1f} s")
    print(f"  of which jobs' own time per slot {busiest_slot:.1f} s, fixed cost {fixed:.1f} s")
    print(f"ratio parallel / (sequential / {args.slots}) = {ratio:.2f} (target <= 1.15)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python -m benchmarks.sweep_parallel", *sys.argv[1:]]),
        "job": " ".join(job),
        "launcher": " ".join(launcher),
        "jobs": args.jobs,
        "slots": args.slots,
        "sequential": sequential,
        "parallel": parallel,
        "parallel_fixed_s": round(fixed, 1),
        "ratio": round(ratio, 3),
        "goal": "ratio <= 1.15",
        "load_average": {"before": load_before, "after": load_after},
        "cpus": os.cpu_count(),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
