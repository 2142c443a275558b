"""Training throughput (sequences/s) of the framework against the plain transformers + torch loop,
measured in one process, interleaved (framework epoch, plain epoch, ...), so that both see the
same machine load. Full fine-tuning of MiniLM on 640 vader_polarity texts, batch 32, one epoch
per round; the first round of each is a warm-up and not counted. The framework runs its default
trainer, which clips the gradient norm at 1.0; ``--plain-clip 1.0`` makes the plain loop do the
same work.

    python experiments/text_transfer/throughput.py --out outputs/text_transfer/throughput.json
    python experiments/text_transfer/throughput.py --plain-clip 1.0 --out .../throughput_clip.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_loop import batches, cosine, model_dir, pooled, vader_split  # noqa: E402

from transferlab import compose  # noqa: E402
from transferlab.build import build_experiment  # noqa: E402

N, BATCH = 640, 32


class EpochTimer(pl.Callback):
    """Seconds from the start of the training epoch to the end of its last batch."""

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.seconds = time.perf_counter() - self.start


def framework_epoch(root: Path, round_: int) -> float:
    overrides = [
        "backbone=minilm",
        "data=vader_polarity",
        f"data.train_size={N}",
        f"data.batch_size={BATCH}",
        "strategy=full",
        "strategy.backbone_lr_mult=0.05",
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=0",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "print_config=false",
        "logger=none",
        "~callbacks",  # no checkpoint writes inside the timed epoch
    ]
    cfg = compose(overrides, run_dir=root / f"fw{round_}", root_dir=root)
    exp = build_experiment(cfg)
    timer = EpochTimer()
    exp.trainer.callbacks.append(timer)
    exp.trainer.fit(exp.module, datamodule=exp.fit_data)
    return N / timer.seconds


def plain_epoch(texts, labels, clip: float | None) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    encoder = AutoModel.from_pretrained(model_dir(), add_pooling_layer=False).train()
    head = nn.Linear(encoder.config.hidden_size, 3)
    params = [{"params": head.parameters(), "lr": 1e-3}]
    params.append({"params": encoder.parameters(), "lr": 5e-5})
    optimizer = torch.optim.AdamW(params, weight_decay=0.01)
    total = (len(texts) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine(s, total))
    target = torch.as_tensor(labels, dtype=torch.long)
    order = torch.randperm(len(texts)).tolist()
    start = time.perf_counter()
    for idx, ids, mask in batches(tokenizer, texts, BATCH, order):
        loss = nn.functional.cross_entropy(head(pooled(encoder, ids, mask)), target[idx])
        loss.backward()
        if clip:  # the framework's default trainer clips the gradient norm at 1.0
            nn.utils.clip_grad_norm_([*encoder.parameters(), *head.parameters()], clip)
        optimizer.step()
        optimizer.zero_grad()
        sched.step()
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--plain-clip", type=float, default=None, help="clip the plain loop too")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    texts, labels = vader_split(0, N, regression=False)[0]
    rates = {"framework": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rates["framework"].append(framework_epoch(Path(tmp), r))
            rates["plain"].append(plain_epoch(texts, labels, args.plain_clip))
            print(
                f"round {r}: framework {rates['framework'][-1]:.1f} seq/s, "
                f"plain {rates['plain'][-1]:.1f} seq/s",
                flush=True,
            )
    counted = {k: v[1:] for k, v in rates.items()}
    result = {
        "rounds": rates,
        "plain_clip": args.plain_clip,
        "median_seq_per_s": {k: statistics.median(v) for k, v in counted.items()},
    }
    result["ratio"] = result["median_seq_per_s"]["framework"] / result["median_seq_per_s"]["plain"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["median_seq_per_s"]), f"ratio {result['ratio']:.3f}")


if __name__ == "__main__":
    main()
