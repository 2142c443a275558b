"""Ranking candidate backbones for a target task: one frozen forward pass each, then every
transferability score, as a table (CSV, markdown) and a bar chart. Knows built parts (module,
datamodule, feature cache), not configs."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from transferlab.data.domains import convert_channels
from transferlab.files import write_atomic, write_text_atomic
from transferlab.transfer_scores import h_score, knn_accuracy, leep, logme, nce, transrate

log = logging.getLogger("transferlab")

FEATURE_SCORES = ("logme", "h_score", "transrate", "knn_acc")
SOURCE_SCORES = ("leep", "nce")
SCORES = FEATURE_SCORES + SOURCE_SCORES


@dataclass
class Ranked:
    """One candidate's scores (None where a score does not apply) and what it cost."""

    name: str
    feature_dim: int
    images: int
    seconds: float
    scores: dict[str, float | None] = field(default_factory=dict)


def feature_scores(features: torch.Tensor, labels: torch.Tensor, knn_k: int) -> dict[str, float]:
    return {
        "logme": logme(features, labels),
        "h_score": h_score(features, labels),
        "transrate": transrate(features, labels),
        "knn_acc": knn_accuracy(features, labels, k=knn_k),
    }


@torch.inference_mode()
def source_probabilities(source, loader) -> torch.Tensor:
    """Softmax outputs of a source model (a TransferModule with its source head) over a loader."""
    source.eval()
    device = next(source.parameters()).device
    channels = source.extra.get("in_chans")  # grey sources on colour targets and back
    return torch.cat(
        [
            source(convert_channels(x, channels).to(device)).softmax(-1).double().cpu()
            for x, _ in loader
        ]
    )


def source_scores(source_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {"leep": leep(source_probs, labels), "nce": nce(source_probs.argmax(1), labels)}


def rank_candidate(name: str, cache, labels_split: str = "train", source=None, knn_k: int = 5):
    """Scores of one candidate from its feature cache (computed once, reused by later runs)."""
    start = time.perf_counter()
    features, labels = cache[labels_split]
    scores: dict[str, float | None] = feature_scores(features, labels, knn_k)
    if source is not None:
        probs = source_probabilities(source, cache.dm.eval_dataloader(labels_split))
        scores.update(source_scores(probs, labels))
    else:
        scores.update(dict.fromkeys(SOURCE_SCORES))
    seconds = time.perf_counter() - start
    return Ranked(name, features.shape[1], len(labels), round(seconds, 2), scores)


def ordered(ranked: list[Ranked], by: str = "logme") -> list[Ranked]:
    return sorted(ranked, key=lambda r: -(r.scores.get(by) or float("-inf")))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def ranking_table(ranked: list[Ranked], by: str = "logme") -> list[str]:
    """Markdown table, best candidate (by ``by``) first."""
    head = ["rank", "candidate", *SCORES, "feature dim", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(ordered(ranked, by), 1):
        cells = [str(i), r.name, *(_fmt(r.scores.get(s)) for s in SCORES)]
        lines.append("| " + " | ".join([*cells, str(r.feature_dim), f"{r.seconds:.1f}"]) + " |")
    return lines


def write_ranking(ranked: list[Ranked], out: Path, command: str, by: str = "logme") -> list[Path]:
    """``ranking.csv``, ``ranking.md`` and ``ranking.png`` in ``out``."""
    rows = [{**{k: v for k, v in asdict(r).items() if k != "scores"}, **r.scores} for r in ranked]

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    page = [
        "# Candidate ranking",
        "",
        f"`{command}`",
        "",
        f"Higher is better for every score; sorted by {by}. LEEP and NCE need a source head.",
        "",
        *ranking_table(ranked, by),
    ]
    written = [
        write_atomic(out / "ranking.csv", write_csv),
        write_text_atomic(out / "ranking.md", "\n".join(page) + "\n"),
        save_score_bars(ranked, out / "ranking.png"),
    ]
    return written


def save_score_bars(ranked: list[Ranked], path: Path) -> Path:
    """One panel per score, one bar per candidate, values printed on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in SCORES if any(r.scores.get(s) is not None for r in ranked)]
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 0.5 * len(ranked) + 1.6))
    names = [r.name for r in ranked]
    for ax, score in zip(axes if len(shown) > 1 else [axes], shown, strict=True):
        values = [r.scores.get(score) for r in ranked]
        ys = range(len(ranked))
        ax.barh(ys, [v if v is not None else 0 for v in values], color="tab:blue")
        for y, v in zip(ys, values, strict=True):
            ax.text(0, y, f" {_fmt(v)}", va="center", fontsize=7)
        ax.set_yticks(
            list(ys),
            names if ax is (axes[0] if len(shown) > 1 else axes) else [""] * len(ys),
            fontsize=7,
        )
        ax.invert_yaxis()
        ax.set_title(score, fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path
