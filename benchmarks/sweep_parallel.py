"""Wall time of one N-job sweep run one job at a time (basic launcher) and on k Ray slots.

    python benchmarks/sweep_parallel.py --jobs 4 --slots 2

Every job uses one CPU thread (OMP_NUM_THREADS=1) under both launchers, so one slot is one core
and the ideal parallel time is sequential / k. Prints both times and
ratio = parallel / (sequential / k); the target is at most 1.15. The machine's load average is
printed before and after: other work on the machine disturbs the measurement.
"""

from __future__ import annotations

import argparse
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
    "data.num_samples=1024",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=4",
    "trainer.enable_progress_bar=false",
    "print_config=false",
    "logger=none",
]


def timed_sweep(root: Path, seeds: str, launcher: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "transferlab.train", "-m", *JOB, f"seed={seeds}", *launcher]
    cmd += [f"paths.root_dir={root}", f"hydra.sweep.dir={root / 'sweep'}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    seeds = ",".join(str(s) for s in range(args.jobs))
    ray = ["hydra/launcher=ray", f"hydra.launcher.ray.init.num_cpus={args.slots}"]
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        sequential = timed_sweep(Path(tmp) / "basic", seeds, [])
        parallel = timed_sweep(Path(tmp) / "ray", seeds, ray)
    print(f"load average after:  {os.getloadavg()}")
    ratio = parallel / (sequential / args.slots)
    print(f"{args.jobs} jobs, one at a time: {sequential:.1f} s")
    print(f"{args.jobs} jobs on {args.slots} Ray slots: {parallel:.1f} s")
    print(f"ratio parallel / (sequential / {args.slots}) = {ratio:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
