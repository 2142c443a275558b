"""Pictures written into a run directory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
