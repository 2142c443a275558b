"""What a finished run leaves in its dir: metrics.json, the confusion matrix, the exported
backbone and Fisher, and the closing summary in the log."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from transferlab.files import write_atomic, write_json
from transferlab.module import TransferModule

log = logging.getLogger("transferlab")


def write_outputs(module: TransferModule, metrics: dict, out: Path, best: str) -> None:
    """metrics.json, confusion_matrix.png and reliability_diagram.png in ``out``, then the
    summary."""
    from transferlab.plots import save_confusion_matrix

    write_json(out / "metrics.json", metrics)
    if module.confusion_matrix is not None:
        save_confusion_matrix(
            module.confusion_matrix, module.extra["class_names"], out / "confusion_matrix.png"
        )
    write_reliability_diagram({"test": module.reliability}, out)
    print_summary(metrics, out, best)


def write_reliability_diagram(curves: dict, out: Path) -> Path | None:
    """``out/reliability_diagram.png`` with one panel per (title -> reliability bins); nothing
    when no curve has data (no test split)."""
    from transferlab.plots import save_reliability_diagram

    curves = {k: v for k, v in curves.items() if v is not None and v.total > 0}
    if not curves:
        return None
    path = out / "reliability_diagram.png"
    write_atomic(path, lambda tmp: save_reliability_diagram(curves, tmp))
    return path


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(contiguous, tmp))


def export_backbone(module: TransferModule, path: Path) -> None:
    """The trained backbone as a plain timm state dict (safetensors), for later transfer; LoRA
    updates are merged into the base weights first (in a copy: the run's module is kept)."""
    backbone = module.backbone
    if getattr(backbone, "merge", None) is not None:
        backbone = copy.deepcopy(backbone)
        backbone.merge_adapters()
    save_tensors(backbone.model.state_dict(), path)
    log.info("backbone weights exported to %s", path)


def export_fisher(module: TransferModule, dm, path: Path) -> None:
    """Save the backbone's diagonal Fisher on the training data, for ``regularization=ewc``."""
    from transferlab.strategies import diagonal_fisher

    save_tensors(diagonal_fisher(module, *dm.splits.train), path)
    log.info("backbone Fisher (for regularization=ewc) written to %s", path)


def print_summary(metrics: dict, out: Path, best: str) -> None:
    """Key metrics, trainable parameters, wall time and where the run is (console and log)."""
    names = (
        "val/acc",
        "test/acc",
        "test/f1",
        "test/auroc",
        "test/ece",
        "test_source/acc",
        "oracle/test/acc",
    )
    keys = [k for k in names if k in metrics]
    lines = [f"  {k:<18}{metrics[k]:.4f}" for k in keys]
    lines.append(
        f"  {'trainable params':<18}{int(metrics['params/trainable']):,} of {int(metrics['params/total']):,}"
    )
    lines.append(f"  {'wall time':<18}{metrics['time/wall_s']:.1f} s")
    lines.append(f"  {'run dir':<18}{out}")
    if best:
        lines.append(f"  {'best checkpoint':<18}{best}")
    log.info("transferlab summary\n%s", "\n".join(lines))
