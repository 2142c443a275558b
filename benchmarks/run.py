"""Run the benchmarks and write ``outputs/bench/results.json`` and ``results.md``.

    make bench                                   # all parts, about 10 minutes on 2 CPU cores
    .venv/bin/python -m benchmarks.run --parts overhead,memory --quick

Every figure is a ratio of two arms measured in this one process (or its child processes),
the arms interleaved, so a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import data_wait, feature_cache, memory, overhead
from benchmarks.report import markdown

PARTS = {
    "overhead": overhead.run,
    "own_time": overhead.run_own,
    "feature_cache": feature_cache.run,
    "memory": memory.run,
    "data_wait": data_wait.run,
}


def machine(threads: int) -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_cores": os.cpu_count(),
        "torch_threads": threads,
        "load_avg_1min_at_start": os.getloadavg()[0],
        "gpu": gpu,
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--quick", action="store_true", help="tiny model and data (for tests)")
    parser.add_argument("--out", default="outputs/bench", help="results directory")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads; 0 = all cores, or 1 when the load average exceeds the core count "
        "(spinning threads of a shared machine slow a step several-fold)",
    )
    parser.add_argument(
        "--no-sweep", action="store_true", help="feature_cache: leave out the two 6-job sweeps"
    )
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    threads = args.threads or (1 if os.getloadavg()[0] > (os.cpu_count() or 1) else 0)
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the child processes of feature_cache
    out = Path(args.out)
    results = {"machine": machine(torch.get_num_threads()), "quick": args.quick}
    for name in args.parts.split(","):
        start = time.perf_counter()
        options = {"sweeps": False} if name == "feature_cache" and args.no_sweep else {}
        results[name] = PARTS[name](out / "work" / name, quick=args.quick, **options)
        results[name]["bench_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: done in {results[name]['bench_s']} s", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
