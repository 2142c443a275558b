"""Pictures written into a run directory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def save_confusion_matrix(cm: torch.Tensor, class_names: list[str], path: str | Path) -> Path:
    """Write a labelled confusion matrix (rows = true class, columns = prediction) as PNG."""
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n))
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        peak = cm.max().item() or 1
        for i in range(n):
            for j in range(n):
                v = int(cm[i, j])
                ax.text(
                    j,
                    i,
                    v,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > peak / 2 else "black",
                )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_lr_per_group(steps: list[int], lrs: dict[str, list[float]], path: str | Path) -> Path:
    """Write the learning rate of each layer group against the optimizer step as PNG."""
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    names = list(lrs)
    for i, name in enumerate(names):
        color = "black" if name == "head" else cmap(i / max(len(names) - 1, 1))
        ax.plot(steps[: len(lrs[name])], lrs[name], label=name, color=color, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=7, ncol=2 if len(names) > 8 else 1, loc="upper right")
    ax.grid(alpha=0.3)
    # fixed margins that fit the axis labels: every run writes this plot as its fit ends, and
    # tight_layout's text measuring took about 70 ms of the 0.3 s it cost
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.12, top=0.93)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_reliability_diagram(curves: dict, path: str | Path) -> Path:
    """Write one reliability diagram per curve (title -> :class:`~transferlab.calibration.
    Reliability`) side by side: accuracy against mean confidence per bin, the diagonal being
    perfect calibration, with each bin's image count below."""
    fig, axes = plt.subplots(
        2,
        len(curves),
        figsize=(4.2 * len(curves), 5),
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
        sharex=True,
    )
    for col, (title, reliability) in enumerate(curves.items()):
        confidence, accuracy, count = (t.numpy() for t in reliability.per_bin())
        n = reliability.n_bins
        centres = (torch.arange(n, dtype=torch.float64) + 0.5).numpy() / n
        top, bottom = axes[0, col], axes[1, col]
        top.bar(
            centres, accuracy, width=1 / n, edgecolor="black", color="tab:blue", label="accuracy"
        )
        low = np.fmin(accuracy, confidence)
        top.bar(
            centres,
            np.abs(confidence - accuracy),
            bottom=low,
            width=1 / n,
            facecolor="none",
            edgecolor="tab:red",
            hatch="///",
            label="gap to mean confidence",
        )
        top.plot([0, 1], [0, 1], "k--", linewidth=1)
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        top.set_title(
            f"{title}\nECE {reliability.ece:.4f} ({reliability.total} images)", fontsize=9
        )
        top.legend(fontsize=7, loc="upper left")
        bottom.bar(centres, count, width=1 / n, color="grey")
        bottom.set(xlabel="confidence", ylabel="images")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120, format="png")  # the path may be a temp file
    plt.close(fig)
    return path
