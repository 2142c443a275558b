"""Writing one checkpoint: Lightning's own writer (``TorchCheckpointIO``: serialise into a byte
buffer, then copy the buffer to the file) against :class:`transferlab.files.FileCheckpointIO`
(``torch.save`` straight into a temp file beside the target, then rename).

    python -m benchmarks.checkpoint_write                 # ResNet-18, 15 rounds
    python -m benchmarks.checkpoint_write --model resnet50 --rounds 9

The checkpoint is the model's state dict with AdamW's two moments for every weight, about the
size of a run's ``best.ckpt``. The two writers alternate round by round into the same dir and
are compared by their medians; prints one line and, with ``--out``, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from benchmarks.common import ratio
from transferlab.files import FileCheckpointIO


def checkpoint_of(model_name: str) -> dict:
    state = timm.create_model(model_name, pretrained=False).state_dict()
    moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in state.items()}
    return {"state_dict": state, "optimizer_states": [moments], "epoch": 0}


def measure(model_name: str, rounds: int, work: Path) -> dict:
    checkpoint = checkpoint_of(model_name)
    writers = {"lightning": TorchCheckpointIO(), "transferlab": FileCheckpointIO()}
    seconds: dict[str, list[float]] = {name: [] for name in writers}
    for round_ in range(rounds + 1):  # round 0: warm-up, not counted
        for name, writer in writers.items():
            path = work / f"{name}.ckpt"
            start = time.perf_counter()
            writer.save_checkpoint(checkpoint, path)
            if round_:
                seconds[name].append(time.perf_counter() - start)
    size = (work / "transferlab.ckpt").stat().st_size
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    pairs = zip(seconds["transferlab"], seconds["lightning"], strict=True)
    per_round = [ratio(ours, theirs) for ours, theirs in pairs]
    return {
        "model": model_name,
        "size_mb": size / 1e6,
        "rounds": rounds,
        "median_s": medians,
        "ratio": ratio(medians["transferlab"], medians["lightning"]),
        "ratio_per_round": [min(per_round), max(per_round)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="a timm model name")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.model, args.rounds, Path(tmp))
    m = result["median_s"]
    print(
        f"{result['model']} checkpoint ({result['size_mb']:.0f} MB), median of "
        f"{result['rounds']} rounds: Lightning's writer {1000 * m['lightning']:.0f} ms, "
        f"FileCheckpointIO {1000 * m['transferlab']:.0f} ms: {result['ratio']:.2f}x "
        f"(per round {result['ratio_per_round'][0]:.2f}-{result['ratio_per_round'][1]:.2f})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
