"""The DANN paper's MNIST -> MNIST-M protocol as a plain PyTorch loop, beside transferlab.

Same network (conv 5x5 32, pool, conv 5x5 48, pool; 100-100 label predictor; 100-unit domain
classifier), same protocol (SGD momentum 0.9, lr 0.01 / (1 + 10 p)^0.75, reversal factor
2 / (1 + exp(-10 p)) - 1, each domain's mean subtracted, the epoch chosen on source validation),
same data and splits as ``transferlab-train experiment=dann_paper`` (the splits come from the
framework's data config; everything after the uint8 arrays is written here by hand).

    OMP_NUM_THREADS=1 python -m benchmarks.dann_paper --methods none,dann,mmd,coral --seeds 0,1,2
    python -m benchmarks.dann_paper --table outputs/dann_plain --framework outputs/multirun/dann_paper/<date>

Writes one JSON file per (method, seed) under --out; ``--table`` prints plain vs framework.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn import functional as F

from benchmarks.common import compose_cfg
from transferlab.build import build_datamodule

BATCH = 64  # per domain
METHODS = ("none", "dann", "mmd", "coral", "adabn")
# the framework's sweep names the paper's DANN choice dann_paper
FRAMEWORK_NAMES = {"dann_paper": "dann"}


def domain_splits(seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images and labels of every split of both domains, as experiment=dann_paper has them."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(["experiment=dann_paper", f"seed={seed}"], Path(tmp))
        dm = build_datamodule(cfg, train_augmentation=False)
        dm.setup()
    src, tgt = dm.splits, dm.target_splits
    return {
        **{f"source_{k}": getattr(src, k) for k in ("train", "val", "test")},
        **{f"target_{k}": getattr(tgt, k) for k in ("train", "val", "test")},
    }


class PaperNet(nn.Module):
    def __init__(self, batch_norm: bool = False):
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else lambda _: nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), norm(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5), norm(48), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)
        )
        self.domain = nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 1))


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def mmd2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Biased squared MMD, Gaussian kernels at 0.25-4x the mean squared distance (as DAN)."""
    x = torch.cat([a, b])
    d2 = (x[:, None] - x[None]).pow(2).sum(-1)  # not cdist: its sqrt has no gradient at 0
    scale = d2.detach().sum() / (len(x) ** 2 - len(x))
    k = sum(torch.exp(-d2 / (f * scale)) for f in (0.25, 0.5, 1.0, 2.0, 4.0))
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def coral_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    return (ca - cb).pow(2).sum() / (4 * a.shape[1] ** 2)


def alignment_loss(net: PaperNet, method: str, fs, ft, p: float) -> torch.Tensor:
    if method == "dann":
        coeff = 2 / (1 + math.exp(-10 * p)) - 1
        logits = net.domain(Reverse.apply(torch.cat([fs, ft]), coeff)).squeeze(-1)
        labels = torch.cat([torch.zeros(len(fs)), torch.ones(len(ft))])
        return F.binary_cross_entropy_with_logits(logits, labels)
    if method == "mmd":
        return mmd2(fs, ft)
    if method == "coral":
        return coral_loss(fs, ft)
    return fs.new_zeros(())


@torch.no_grad()
def accuracy(net: PaperNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    pred = torch.cat([net.classifier(net.features(b)).argmax(-1) for b in x.split(500)])
    net.train()
    return (pred == y).float().mean().item()


@torch.no_grad()
def adabn(net: PaperNet, x: torch.Tensor) -> None:
    """Replace every BatchNorm layer's statistics by their average over batches of ``x``."""
    layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    for batch in x.split(BATCH):
        net.features(batch)
    for bn in layers:
        bn.momentum = 0.1


def train_one(method: str, seed: int, epochs: int, data: dict) -> dict:
    """One run of the protocol; returns accuracies at the best source-validation epoch."""
    torch.manual_seed(seed)
    mean_s = (data["source_train"][0].float() / 255).mean((0, 2, 3), keepdim=True)
    mean_t = (data["target_train"][0].float() / 255).mean((0, 2, 3), keepdim=True)
    x = {
        k: v[0].float() / 255 - (mean_s if k.startswith("source") else mean_t)
        for k, v in data.items()
    }
    y = {k: v[1] for k, v in data.items()}
    # adabn: the BatchNorm network, trained on the source alone, then target statistics
    net = PaperNet(batch_norm=method == "adabn")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    per_epoch = len(y["source_train"]) // BATCH
    total, step, start = epochs * per_epoch, 0, time.perf_counter()
    best, best_state, curve = -1.0, None, []
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order_s = torch.randperm(len(y["source_train"]), generator=gen)
        order_t = torch.randperm(len(y["target_train"]), generator=gen)
        for i in range(per_epoch):
            p = step / total
            for group in opt.param_groups:
                group["lr"] = 0.01 / (1 + 10 * p) ** 0.75
            bs, bt = order_s[i * BATCH : (i + 1) * BATCH], order_t[i * BATCH : (i + 1) * BATCH]
            target = x["target_train"][bt] if method != "adabn" else x["target_train"][:0]
            feats = net.features(torch.cat([x["source_train"][bs], target]))
            fs, ft = feats[:BATCH], feats[BATCH:]
            loss = F.cross_entropy(net.classifier(fs), y["source_train"][bs])
            loss = loss + alignment_loss(net, method, fs, ft, p)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        val = accuracy(net, x["source_val"], y["source_val"])
        # the target's validation accuracy is recorded to show convergence, never to select
        curve.append([step, val, accuracy(net, x["target_val"], y["target_val"])])
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    extra = {}
    if method == "adabn":
        extra["test_before_adabn/acc"] = accuracy(net, x["target_test"], y["target_test"])
        extra["test_source/acc"] = accuracy(net, x["source_test"], y["source_test"])
        adabn(net, x["target_train"])
    return {
        "method": method,
        "seed": seed,
        "steps": total,
        "val/acc": best,
        "test/acc": accuracy(net, x["target_test"], y["target_test"]),
        "test_source/acc": accuracy(net, x["source_test"], y["source_test"]),
        **extra,  # under AdaBN: the source is scored with its own statistics
        "wall_s": time.perf_counter() - start,
        "curve": curve,  # [step, source val acc, target val acc] after every epoch
    }


def framework_runs(sweep: Path) -> list[dict]:
    runs = []
    for overrides in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        choice = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()))
        metrics = overrides.parent.parent / "metrics.json"
        if metrics.is_file():
            method = choice.get("domain_adaptation", "none")
            runs.append({**json.loads(metrics.read_text()), "method": method})
    return runs


def cell(runs: list[dict], key: str = "test/acc") -> str:
    values = [100 * r[key] for r in runs]
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f} (n={len(values)})"


def table(plain_dir: Path, sweeps: list[Path]) -> str:
    plain = [json.loads(p.read_text()) for p in sorted(plain_dir.glob("*.json"))]
    ours = [r for s in sweeps for r in framework_runs(s)]
    lines = ["| method | plain loop, target test | transferlab, target test | plain, source test "
             "| transferlab, source test |", "|---|---|---|---|---|"]  # fmt: skip
    methods = sorted({FRAMEWORK_NAMES.get(r["method"], r["method"]) for r in plain + ours})
    for m in methods:
        a = [r for r in plain if r["method"] == m]
        b = [r for r in ours if FRAMEWORK_NAMES.get(r["method"], r["method"]) == m]
        src = "test_source/acc"
        lines.append(f"| {m} | {cell(a)} | {cell(b)} | {cell(a, src)} | {cell(b, src)} |")
    return "\n".join(lines)


PAPER = {"none": 52.25, "dann": 76.66}  # Ganin et al. 2016, table 2 (MNIST -> MNIST-M)


def plot(plain_dir: Path, sweeps: list[Path], path: Path) -> None:
    """Target test accuracy per method (mean ± std, dots = seeds), the paper's as lines, and
    the plain runs' target validation curves (seed 0), to show how long they took to settle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = [json.loads(p.read_text()) for p in sorted(plain_dir.glob("*.json"))]
    ours = [{**r, "method": FRAMEWORK_NAMES.get(r["method"], r["method"])} for s in sweeps
            for r in framework_runs(s)]  # fmt: skip
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(10, 3.8))
    for offset, runs, label in ((-0.2, plain, "plain loop"), (0.2, ours, "transferlab")):
        for i, m in enumerate(METHODS):
            acc = [100 * r["test/acc"] for r in runs if r["method"] == m]
            if acc:
                bars.bar(i + offset, statistics.mean(acc), 0.38, color=f"C{int(offset > 0)}",
                         yerr=statistics.stdev(acc) if len(acc) > 1 else 0, capsize=3,
                         label=label if i == 0 else None)  # fmt: skip
                bars.plot([i + offset] * len(acc), acc, "k.", ms=4)
    for m, acc in PAPER.items():
        i = METHODS.index(m)
        bars.hlines(acc, i - 0.4, i + 0.4, colors="k", linestyles="--")
    bars.set_xticks(range(len(METHODS)), ["source only", "DANN", "MMD", "CORAL", "AdaBN ¹"])
    bars.set_ylabel("MNIST-M test accuracy (%)")
    bars.set_title("dashed: the paper (60k digits, BSDS500)", fontsize=9)
    bars.legend(loc="lower right", fontsize=8)
    for m in METHODS:
        run = next((r for r in plain if r["method"] == m and r["seed"] == 0), None)
        if run:
            steps, _, target = zip(*run["curve"], strict=True)
            curves.plot(steps, [100 * t for t in target], label=m)
    curves.set_xlabel("step")
    curves.set_ylabel("MNIST-M val accuracy (%)")
    curves.set_title("plain loop, seed 0, after each epoch", fontsize=9)
    curves.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("outputs/dann_plain"))
    parser.add_argument("--table", type=Path, help="print the table of this --out dir")
    parser.add_argument("--framework", type=Path, nargs="*", default=[], help="sweep dirs")
    parser.add_argument("--plot", type=Path, help="with --table: also draw this PNG")
    args = parser.parse_args()
    if args.table:
        print(table(args.table, args.framework))
        if args.plot:
            plot(args.table, args.framework, args.plot)
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        data = domain_splits(seed)
        for method in args.methods.split(","):
            result = train_one(method, seed, args.epochs, data)
            print(json.dumps(result), flush=True)
            name = f"{method}_seed{seed}_e{args.epochs}.json"
            (args.out / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
