"""Summarise an exercise-3 sweep: a mean ± std table, a bar plot, and a PCA picture of the
backbone features of both domains for each method (seed 0).

    .venv/bin/python experiments/domain_adaptation/summarise.py SWEEP_DIR [SWEEP_DIR ...]

Writes results.md, accuracy.png and features_pca.png next to this file (or under --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ARMS = ("none", "target BN only", "dann", "mmd", "coral")
# an alignment weight of 0 keeps only the side effect of adaptation: target images in the batch
# that batch norm normalises (source-only loss, batch statistics from both domains)
BN_ONLY = "target BN only"
COLUMNS = {
    "test/acc": "target test acc",
    "test_source/acc": "source test acc",
    "oracle/test/acc": "target test acc, oracle",
    "val/acc": "source val acc",
    "time/wall_s": "wall s",
}


def read_runs(sweep: Path) -> list[dict]:
    """One dict per job: its overrides (``domain_adaptation``, ``seed``), metrics and dir."""
    runs = []
    for overrides in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        job = overrides.parent.parent
        choice = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()))
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        arm, seed = choice.get("domain_adaptation", "none"), choice.get("seed", "0")
        if float(choice.get("domain_adaptation.alignment.weight", 1)) == 0:
            arm = BN_ONLY
        runs.append({"dir": job, "arm": arm, "seed": seed, "metrics": metrics})
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(runs: list[dict]) -> str:
    header = "| method | seeds | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for arm in ARMS:
        done = [r["metrics"] for r in runs if r["arm"] == arm and r["metrics"]]
        if not done:
            continue
        cells = []
        for key in COLUMNS:
            m, s = mean_std([d[key] for d in done])
            cells.append(f"{m:.1f}" if key == "time/wall_s" else f"{100 * m:.1f} ± {100 * s:.1f}")
        lines.append(f"| {arm} | {len(done)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_plot(runs: list[dict], path: Path) -> None:
    arms = [a for a in ARMS if any(r["arm"] == a and r["metrics"] for r in runs)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for offset, key, label in ((-0.2, "test/acc", "target (MNIST-M)"),
                               (0.2, "test_source/acc", "source (MNIST)")):  # fmt: skip
        values = [[r["metrics"][key] for r in runs if r["arm"] == a and r["metrics"]] for a in arms]
        x = np.arange(len(arms)) + offset
        stats = [mean_std(v) for v in values]
        ax.bar(x, [m for m, _ in stats], 0.38, yerr=[s for _, s in stats], capsize=3, label=label)
        for xi, v in zip(x, values, strict=True):
            ax.plot([xi] * len(v), v, "k.", ms=4)
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylabel("test accuracy (mean ± std, dots = seeds)")
    ax.axhline(0.1, ls=":", c="grey", label="chance")
    ax.set_ylim(0, 1.15)
    ax.legend(loc="upper center", ncols=3, fontsize=8)
    ax.set_title("MNIST → MNIST-M, model picked on source val")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@torch.no_grad()
def domain_features(run_dir: Path, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features of ``n`` source and ``n`` target test images (best checkpoint)."""
    from hydra.utils import instantiate

    from transferlab.build import load_module

    module, cfg = load_module(str(run_dir / "checkpoints" / "best.ckpt"))
    dm = instantiate(cfg.data, augmentation=None)
    dm.setup()
    module.eval()
    source = module.features(dm.splits.test[0][:n]).numpy()
    target = module.features(dm.target_splits.test[0][:n]).numpy()
    return source, target


def proxy_a_distance(source: np.ndarray, target: np.ndarray) -> float:
    """2 (1 - 2 err) of a cross-validated linear domain classifier (Ben-David et al.)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.concatenate([source, target]))
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    acc = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=5).mean()
    return 2 * (1 - 2 * (1 - acc))


def pca_picture(runs: list[dict], path: Path, seed: str = "0") -> dict[str, float]:
    from sklearn.decomposition import PCA

    chosen = [r for a in ARMS for r in runs if r["arm"] == a and r.get("seed") == seed
              and (r["dir"] / "checkpoints" / "best.ckpt").is_file()]  # fmt: skip
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.4), squeeze=False)
    distances = {}
    for ax, run in zip(axes[0], chosen, strict=True):
        source, target = domain_features(run["dir"])
        xy = PCA(2).fit_transform(np.concatenate([source, target]))
        distances[run["arm"]] = proxy_a_distance(source, target)
        ax.scatter(*xy[: len(source)].T, s=3, alpha=0.5, label="source (MNIST)")
        ax.scatter(*xy[len(source) :].T, s=3, alpha=0.5, label="target (MNIST-M)")
        acc = run["metrics"].get("test/acc", float("nan"))
        ax.set_title(
            f"{run['arm']}: target acc {100 * acc:.0f}%\nproxy A-dist {distances[run['arm']]:.2f}"
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=7, markerscale=3)
    fig.suptitle(f"PCA of backbone features, test images of both domains (seed {seed})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return distances


def samples_picture(run_dir: Path, path: Path, n: int = 10) -> None:
    """The first test image of each digit in both domains, as the model receives them."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.paths.root_dir = str(Path.cwd())  # the saved config resolves paths at run time
    dm = instantiate(cfg.data, augmentation=None)
    dm.setup()
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.1))
    for row, (images, labels) in enumerate((dm.splits.test, dm.target_splits.test)):
        for digit in range(n):
            image = images[(labels == digit).nonzero()[0, 0]]
            axes[row, digit].imshow(image.permute(1, 2, 0).numpy())
            axes[row, digit].axis("off")
    fig.suptitle("source (MNIST 5k, top) and target (MNIST-M, bottom) test images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+", help="multirun dirs of the sweeps")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    runs = [run for sweep in args.sweeps for run in read_runs(sweep)]
    failed = [str(r["dir"]) for r in runs if not r["metrics"]]
    text = table(runs)
    bar_plot(runs, args.out / "accuracy.png")
    distances = pca_picture(runs, args.out / "features_pca.png")
    samples_picture(runs[0]["dir"], args.out / "samples.png")
    text += "\n\nproxy A-distance of the seed-0 features (0 = domains indistinguishable, 2 = "
    text += "separable): " + ", ".join(f"{k} {v:.2f}" for k, v in distances.items())
    if failed:
        text += "\n\nfailed runs: " + ", ".join(failed)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
