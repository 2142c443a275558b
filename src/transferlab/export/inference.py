"""Inference over image files: find the inputs, decode them as evaluation does, run a logits
function in batches, and turn the logits into ``predictions.csv`` rows. Knows neither configs nor
which runtime (PyTorch or onnxruntime) computes the logits."""

from __future__ import annotations

import csv
import glob
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from transferlab.errors import ConfigError
from transferlab.export.preprocess import Preprocess, load_image_file
from transferlab.files import write_text_atomic

log = logging.getLogger("transferlab")

Logits = Callable[[torch.Tensor], torch.Tensor]  # uint8 images [N, C, H, W] -> logits [N, K]


def find_inputs(inputs: str | Sequence[str]) -> list[Path]:
    """Every file named by ``inputs``: files, folders (recursively) and globs, in sorted order.

    Hidden files (``.DS_Store``) are passed over; anything else that is not an image is kept, to
    be skipped with a warning when it fails to decode.
    """
    entries = [inputs] if isinstance(inputs, str) else list(inputs)
    if not entries:
        raise ConfigError("No inputs given; add inputs=<image file, folder or glob>.")
    found: dict[Path, None] = {}
    for entry in map(str, entries):
        path = Path(entry).expanduser()
        if path.is_dir():
            files = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not files:
                raise ConfigError(
                    f"Folder '{path}' holds no files; put images in it (sub-folders count) or "
                    "point inputs= at another folder."
                )
        elif path.is_file():
            files = [path]
        else:
            files = [Path(p) for p in sorted(glob.glob(entry, recursive=True)) if Path(p).is_file()]
            if not files:
                raise ConfigError(
                    f"inputs={entry} is not a file or folder and matches no files as a glob; "
                    "check the path (quote globs such as 'images/**/*.png')."
                )
        found.update(dict.fromkeys(files))
    return list(found)


def predict_files(
    paths: Sequence[Path],
    spec: Preprocess,
    logits_of: Logits,
    batch_size: int = 64,
    progress_from: int = 256,
) -> tuple[list[Path], torch.Tensor, list[tuple[Path, str]]]:
    """(readable paths, their logits, skipped (path, reason)) for ``paths``.

    Files stream through in batches of ``batch_size``; a file that cannot be decoded is logged
    as one warning line and skipped. A progress bar shows from ``progress_from`` files up.
    """
    kept, skipped, chunks, batch = [], [], [], []

    def flush() -> None:
        if batch:
            chunks.append(logits_of(torch.stack(batch)).float())
            batch.clear()

    for path in tqdm(paths, desc="predict", unit="img", disable=len(paths) < progress_from):
        try:
            batch.append(load_image_file(path, spec))
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError... for bad files
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            log.warning("skipped %s (not a readable image: %s)", path, reason)
            skipped.append((path, reason))
            continue
        kept.append(path)
        if len(batch) == batch_size:
            flush()
    flush()
    logits = torch.cat(chunks) if chunks else torch.zeros(0, len(spec.class_names))
    return kept, logits, skipped


def prediction_rows(
    paths: Sequence[Path],
    logits: torch.Tensor,
    class_names: Sequence[str],
    temperature: float = 1.0,
    top_k: int = 5,
) -> list[dict]:
    """One row per image: path, prediction, confidence, then the top-k classes with theirs."""
    k = min(top_k, len(class_names))  # top_k >= 1: predict refuses less
    probs = (logits.double() / temperature).softmax(-1)
    top_p, top_i = probs.topk(k, dim=-1)
    rows = []
    for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist(), strict=True):
        row = {"path": str(path), "prediction": class_names[idx[0]], "confidence": f"{ps[0]:.6f}"}
        for rank, (p, i) in enumerate(zip(ps, idx, strict=True), start=1):
            row[f"top{rank}"] = class_names[i]
            row[f"top{rank}_confidence"] = f"{p:.6f}"
        rows.append(row)
    return rows


def write_predictions(path: Path, rows: list[dict]) -> Path:
    """``rows`` as CSV, written whole or not at all."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def loader_logits(logits_of: Logits, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a loader of ``(uint8 images, labels)`` batches."""
    pairs = [(logits_of(x).float(), y) for x, y in batches]
    if not pairs:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def torch_logits(model: torch.nn.Module) -> Logits:
    """A logits function of a PyTorch model on its own device, without autograd."""
    device = next(model.parameters()).device

    def logits_of(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(device)).cpu()

    return logits_of


def evaluation_logits(module, dm, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of a datamodule's split through its evaluation loader, in its order
    (for a source/target pair, ``test`` is the target's test set)."""
    module.eval()
    return loader_logits(torch_logits(module), dm.eval_dataloader(split))
