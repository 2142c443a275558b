"""Parity: a plain PyTorch + timm fine-tuning loop beside ``transferlab-train`` on the class-split
task (``data=mnist_split``, ResNet-18 from the stage-1 file), same data, split, steps and seed.

The plain loop is the one a practitioner writes by hand: timm model, AdamW, cosine decay per
step, one LR for every trainable layer, label smoothing 0.1, gradient clipping at 1.0, the epoch
with the best validation accuracy scored on the test set. Frozen layers get no gradient and keep
their BatchNorm statistics. transferlab runs each strategy with its default recipe, as a sweep
on the parallel launcher (one thread per job).

    OMP_NUM_THREADS=1 python -m benchmarks.parity --quick            # smoke run: tiny model, 1 epoch
    OMP_NUM_THREADS=1 python -m benchmarks.parity                     # the whole grid
    OMP_NUM_THREADS=1 python -m benchmarks.parity --arms full --n 20 --seeds 0,1,2
    python -m benchmarks.parity --table-only                          # the table of what ran

Results: one JSON per plain run and one sweep per framework arm under --out; the table is
printed and written to OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import timm
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import ROOT, compose_cfg, plain_loop
from transferlab.build import build_datamodule

ARMS = ("scratch", "feature_extraction", "partial", "full")
TRAINABLE_TOP = {"scratch": None, "feature_extraction": 0, "partial": 2, "full": None}
WEIGHTS = ROOT / "outputs" / "pretrained" / "mnist_source_resnet18.safetensors"
LR, WEIGHT_DECAY, BATCH = 1e-3, 0.01, 64  # the framework's optimizer=adamw and data defaults


def task_splits(n: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images and labels of the target task's splits, as ``transferlab-train`` has them."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg([f"data.n_per_class={n}", f"seed={seed}"], Path(tmp))
        dm = build_datamodule(cfg, train_augmentation=False)
        dm.setup()
    return {k: getattr(dm.splits, k) for k in ("train", "val", "test")}


class KeepFrozenStill(nn.Module):
    """The model, with its frozen modules kept in eval mode (no BatchNorm updates) in training."""

    def __init__(self, model: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.model, self.frozen = model, frozen

    def forward(self, x):
        return self.model(x)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self


def plain_model(arm: str, model_name: str, weights: Path | None) -> KeepFrozenStill:
    """timm model with 5 outputs; the stage-1 weights unless scratch; the arm's layers frozen."""
    model = timm.create_model(model_name, num_classes=5, in_chans=1)
    if arm != "scratch" and weights is not None:
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise RuntimeError(f"{weights} does not fit {model_name}: {missing} {unexpected}")
    top = TRAINABLE_TOP[arm]
    frozen = []
    if top is not None:  # the children in order: stem parts, stages, then pooling and fc
        stages = [m for name, m in model.named_children() if name.startswith("layer")]
        stem = [m for name, m in model.named_children() if name in ("conv1", "bn1")]
        frozen = stem + stages[: len(stages) - top]
        for m in frozen:
            m.requires_grad_(False)
    return KeepFrozenStill(model, frozen)


@torch.no_grad()
def accuracy(model: nn.Module, x, y, mean, std) -> float:
    model.eval()
    logits = torch.cat([model((b.float() / 255 - mean) / std) for b in x.split(256)])
    return (logits.argmax(-1) == y).float().mean().item()


def run_plain(arm: str, n: int, seed: int, epochs: int, model_name: str, weights) -> dict:
    torch.manual_seed(seed)
    data = task_splits(n, seed)
    x, y = data["train"]
    mean = (x.float() / 255).mean((0, 2, 3)).view(1, -1, 1, 1)
    std = (x.float() / 255).std((0, 2, 3)).view(1, -1, 1, 1)
    model = plain_model(arm, model_name, weights)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, generator=gen)
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    best, best_state = -1.0, None
    for _ in range(epochs):
        plain_loop(model, loader, optimizer, mean, std, 1, scheduler, 1.0, label_smoothing=0.1)
        val = accuracy(model, *data["val"], mean, std)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = accuracy(model, *data["test"], mean, std)
    return {"arm": arm, "n": n, "seed": seed, "steps": total, "val/acc": best, "test/acc": test}


def run_framework(
    arm: str,
    ns: list[int],
    seeds: list[int],
    epochs: int,
    out: Path,
    quick: bool,
    recipe: tuple[str, list[str]] | None = None,
):
    """One ``transferlab-train -m`` sweep over n and seed for this arm's default recipe, or for
    ``recipe`` = (name, overrides) on top of it."""
    extra = ["backbone=tiny", "backbone.weights=null"] if quick else []
    extra += recipe[1] if recipe else []
    cmd = [sys.executable, "-m", "transferlab.train", "-m", "hydra/launcher=parallel"]
    cmd += ["hydra.launcher.slots=1", "hydra.launcher.threads_per_job=1", f"strategy={arm}"]
    cmd += [f"data.n_per_class={','.join(map(str, ns))}", f"seed={','.join(map(str, seeds))}"]
    cmd += [f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu", "logger=none"]
    cmd += ["print_config=false", "trainer.enable_progress_bar=false", *extra]
    # a sweep dir per call, so later calls with other n or seeds add to the table
    name = f"{arm}_n{'-'.join(map(str, ns))}_s{'-'.join(map(str, seeds))}"
    cmd += [f"hydra.sweep.dir={framework_dir(out, recipe and recipe[0]) / name}"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=False, cwd=ROOT)


def framework_dir(out: Path, recipe: str | None) -> Path:
    return out / ("framework" if not recipe else f"framework_{recipe}")


def framework_results(out: Path, recipe: str | None = None) -> list[dict]:
    rows = []
    for overrides in sorted(framework_dir(out, recipe).glob("*/*/.hydra/overrides.yaml")):
        o = dict(s.split("=", 1) for s in yaml.safe_load(overrides.read_text()))
        metrics = overrides.parent.parent / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            rows.append({"arm": o["strategy"], "n": int(o["data.n_per_class"]),
                         "seed": int(o["seed"]), "test/acc": m["test/acc"]})  # fmt: skip
    return rows


def cell(rows: list[dict]) -> str:
    values = [100 * r["test/acc"] for r in rows]
    if not values:
        return "not run"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
    return f"{statistics.mean(values):.1f} ± {std:.1f} (seeds {seeds})"


def select(rows: list[dict], arm: str, n: int) -> list[dict]:
    return [r for r in rows if r["arm"] == arm and r["n"] == n]


def paired(a: list[dict], b: list[dict]) -> str:
    """Mean of b - a over the seeds both have, in points."""
    first, second = ({r["seed"]: r["test/acc"] for r in rows} for rows in (a, b))
    diffs = [100 * (second[s] - first[s]) for s in sorted(first.keys() & second.keys())]
    return f"{statistics.mean(diffs):+.1f} (paired, {len(diffs)} seeds)" if diffs else "–"


def table(out: Path, recipes: list[str] = ()) -> str:
    plain = [json.loads(p.read_text()) for p in sorted((out / "plain").glob("*.json"))]
    ours = framework_results(out)
    extra = {name: framework_results(out, name) for name in recipes}
    head = "| arm | n per class | plain loop | transferlab default | difference |"
    rule = "|---|---|---|---|---|"
    for name in recipes:
        head += f" transferlab, {name} | difference |"
        rule += "---|---|"
    lines = [head, rule]
    for arm in ARMS:
        for n in sorted({r["n"] for r in plain + ours}):
            a, b = select(plain, arm, n), select(ours, arm, n)
            if not a and not b:
                continue
            row = f"| {arm} | {n} | {cell(a)} | {cell(b)} | {paired(a, b)} |"
            for name in recipes:
                c = select(extra[name], arm, n)
                row += f" {cell(c)} | {paired(a, c)} |"
            lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--n", default="5,20,100", help="labelled images per class")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "parity")
    parser.add_argument("--quick", action="store_true", help="tiny random model, n=5, 1 epoch")
    parser.add_argument("--only", choices=("plain", "framework"), help="run one side only")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--recipe",
        help="NAME=OVERRIDES: run the framework side with these overrides on top of each default "
        "(space-separated), as the column NAME; e.g. 'lr1e-2=optimizer.lr=1e-2'",
    )
    parser.add_argument("--recipes", default="", help="recipe columns to add to the table")
    args = parser.parse_args()
    if args.quick:
        args.n, args.seeds, args.epochs = "5", "0", 1
        args.out = args.out.with_name(args.out.name + "_quick")
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    recipe = None
    if args.recipe:
        name, _, overrides = args.recipe.partition("=")
        recipe = (name, overrides.split())
    ns = [int(n) for n in args.n.split(",")]
    if not args.table_only:
        torch.set_num_threads(1)
        model_name, weights = ("test_resnet", None) if args.quick else ("resnet18", WEIGHTS)
        (args.out / "plain").mkdir(parents=True, exist_ok=True)
        for arm in arms:
            if args.only != "framework":
                for n in ns:
                    for seed in seeds:
                        path = args.out / "plain" / f"{arm}_n{n}_seed{seed}.json"
                        if path.is_file():  # measured already: a re-run adds what is missing
                            continue
                        result = run_plain(arm, n, seed, args.epochs, model_name, weights)
                        print(json.dumps(result), flush=True)
                        path.write_text(json.dumps(result))
            if args.only != "plain":
                run_framework(arm, ns, seeds, args.epochs, args.out, args.quick, recipe)
    names = [r for r in args.recipes.split(",") if r] or ([recipe[0]] if recipe else [])
    text = table(args.out, names)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
