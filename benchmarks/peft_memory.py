"""(c) for parameter-efficient fine-tuning: peak training memory and step time of LoRA (r = 4,
8, 16), BitFit, adapters and feature extraction against full fine-tuning, on the 32 px
ViT-Tiny of experiments/peft (or the default ResNet-18) and its data; writes
``outputs/bench/peft_memory_<base>.json`` and ``.md``.

    .venv/bin/python -m benchmarks.peft_memory                  # about 5 minutes on 2 CPU cores
    .venv/bin/python -m benchmarks.peft_memory --base resnet18  # the default ResNet-18
    .venv/bin/python -m benchmarks.peft_memory --base quick     # test_vit on synthetic data
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.common import ROOT
from benchmarks.memory import measure

ARMS = {
    "full": ["strategy=full"],
    "feature_extraction": ["strategy=feature_extraction"],
    "lora_r4": ["strategy=lora", "strategy.peft.r=4"],
    "lora_r8": ["strategy=lora", "strategy.peft.r=8"],
    "lora_r16": ["strategy=lora", "strategy.peft.r=16"],
    "bitfit": ["strategy=bitfit"],
    "adapters": ["strategy=adapters"],
}
# LoRA in the top half of the groups only: no backward pass, so no stored activations, below them
TOP_HALF = {"vit_tiny_32": 6, "resnet18": 2, "quick": 3}
BASES = {
    "vit_tiny_32": ["data=mnist_split", "backbone=vit_tiny_32", "backbone.weights=null"],
    "resnet18": ["data=mnist_split", "backbone=resnet18", "backbone.weights=null"],
    "quick": ["data=synthetic", "backbone=timm", "backbone.name=test_vit", "backbone.weights=null"],
}


def arms_for(base: str) -> dict[str, list[str]]:
    """Every arm, with LoRA r=8 in the top half of the base's layer groups added."""
    k = TOP_HALF[base]
    return {**ARMS, f"lora_r8_top{k}": [*ARMS["lora_r8"], f"strategy.trainable_groups={k}"]}


def table(result: dict, arms: list[str]) -> str:
    """The result as a markdown table, one row per arm."""
    lines = [
        "| arm | trainable params | peak training memory (MiB) | vs full | step time (ms) | vs full |",
        "|---|---|---|---|---|---|",
    ]
    for arm in arms:
        r = result[arm]
        share = 100 * r["trainable_params"] / r["total_params"]
        lines.append(
            f"| {arm} | {r['trainable_params']:,} ({share:.2f}%) | {r['peak_mib']:.1f} | "
            f"{r['memory_vs_full']:.2f}x | {1000 * r['median_step_s']:.0f} | "
            f"{r['step_time_vs_full']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=list(BASES), default="vit_tiny_32")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = arms_for(args.base)
    with tempfile.TemporaryDirectory() as work:
        result = measure(Path(work), BASES[args.base], arms, args.reps)
    result["torch_threads"] = args.threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"peft_memory_{args.base}.json").write_text(json.dumps(result, indent=2))
    (out / f"peft_memory_{args.base}.md").write_text(table(result, list(arms)) + "\n")
    print(table(result, list(arms)))


if __name__ == "__main__":
    main()
