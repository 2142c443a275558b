"""ResNet-50 training throughput (images/s) on one GPU: a plain PyTorch loop against
``transferlab-train``, in fp32 and in bf16 autocast with channels_last.

    .venv/bin/python -m benchmarks.gpu_resnet50 [--steps-per-epoch 30 --batch 128 --reps 2]

Data: 224x224 random RGB images (``data=synthetic``) held in memory as uint8, so the numbers
measure the training step, not decoding. Writes ``outputs/bench/gpu_resnet50.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import median
from benchmarks.overhead import plain_steps, transferlab_steps

ARMS = {  # name: (transferlab overrides, plain-loop autocast dtype, channels_last)
    "fp32": (["trainer.precision=32-true"], None, False),
    "bf16_channels_last": (
        ["trainer.precision=bf16-mixed", "speed.channels_last=true"],
        torch.bfloat16,
        True,
    ),
}


def overrides(batch: int, steps: int, backbone: str, size: int) -> list[str]:
    return [
        "data=synthetic",
        f"data.num_samples={2 * batch * steps}",  # half of it is the train split
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        f"data.size={size}",
        f"data.image_size={size}",
        f"data.batch_size={batch}",
        f"backbone={backbone}",
        "backbone.weights=null",
        "strategy=full",
        "trainer.max_epochs=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
    ]


def measure(work: Path, batch=128, steps=30, reps=2, backbone="resnet50", size=224) -> dict:
    """Images/s of each arm and loop, the framework's overhead per arm, bf16 + NHWC's speed-up."""
    base = overrides(batch, steps, backbone, size)
    results = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    results["config"] = " ".join(base)
    times = {f"{loop}_{arm}": [] for arm in ARMS for loop in ("plain", "transferlab")}
    for rep in range(reps):
        for arm, (extra, dtype, channels_last) in ARMS.items():
            run_dir = work / f"{arm}_{rep}"
            times[f"plain_{arm}"] += plain_steps(
                [*base, *extra], run_dir / "plain", dtype, channels_last
            )
            times[f"transferlab_{arm}"] += transferlab_steps([*base, *extra], run_dir / "tl")
    for name, steps_s in times.items():
        results[f"{name}_img_s"] = batch / median(steps_s)
    for arm in ARMS:
        results[f"overhead_{arm}"] = (
            results[f"plain_{arm}_img_s"] / results[f"transferlab_{arm}_img_s"]
        )
    results["bf16_channels_last_speedup"] = (
        results["transferlab_bf16_channels_last_img_s"] / results["transferlab_fp32_img_s"]
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps-per-epoch", type=int, default=30)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50", help="a conf/backbone choice")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args()
    if not torch.cuda.is_available() and args.backbone == "resnet50":
        raise SystemExit("error: no GPU here; this benchmark measures GPU throughput.")
    work = Path(args.out) / "work" / "gpu"
    results = measure(work, args.batch, args.steps_per_epoch, args.reps, args.backbone, args.size)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_resnet50.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
