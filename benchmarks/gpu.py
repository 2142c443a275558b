"""Every GPU figure in one command (under 10 minutes on one GPU): ResNet-50 fp32 against bf16 +
channels_last, the PEFT memory comparison, and the overhead benchmark; writes one JSON.

    .venv/bin/python -m benchmarks.gpu [--out outputs/bench]   # writes outputs/bench/gpu.json

Without a GPU it says so in one sentence and exits 0, so a script can call it anywhere. The
file is rewritten after each part, so a run stopped by a time limit keeps the parts it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def parts(work: Path) -> dict:
    """Name -> zero-argument function measuring that part; cheapest and most wanted first."""
    # imported here: without a GPU the script answers before loading Lightning and timm
    from benchmarks import gpu_resnet50, overhead, peft_memory
    from benchmarks.memory import measure as measure_memory

    return {
        "resnet50_bf16_channels_last": lambda: gpu_resnet50.measure(work / "resnet50"),
        **{
            f"peft_memory_{base}": lambda base=base: measure_memory(
                work / f"peft_{base}", peft_memory.BASES[base], peft_memory.arms_for(base), reps=2
            )
            for base in ("vit_tiny_32", "resnet18")
        },
        "overhead": lambda: overhead.run(work / "overhead"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No GPU is visible (torch.cuda.is_available() is false): nothing measured.")
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_avg_1min_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for name, measure in parts(out / "work" / "gpu_all").items():
        start = time.perf_counter()
        results[name] = measure()
        results[name]["bench_s"] = round(time.perf_counter() - start, 1)
        (out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: done in {results[name]['bench_s']} s", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
