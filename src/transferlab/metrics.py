"""The metrics every stage logs: accuracy, macro precision, recall, F1, AUROC and calibration for
classes; MAE, RMSE, R² and Spearman correlation for a continuous target."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    SpearmanCorrCoef,
)

from transferlab.calibration import ECE_BINS

# batches held before one update of every metric: an update costs about a millisecond whatever
# its size (argument checks, one kernel per state), a cost each training step paid before
FLUSH_EVERY = 16


class BufferedMetrics(MetricCollection):
    """A MetricCollection that holds (preds, target) batches and updates its metrics with them
    together, every ``FLUSH_EVERY`` batches and before computing. The metrics here are sums and
    concatenations over samples, so the values are those of one update per batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.pending.append((preds, target))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            preds = torch.cat([p for p, _ in self.pending])
            target = torch.cat([t for _, t in self.pending])
            self.pending = []
            super().update(preds, target)

    def updated(self) -> bool:
        """Whether any batch came in since the last reset."""
        return bool(self.pending) or any(m.update_count for m in self.values())

    def compute(self) -> dict:
        self.flush()
        return super().compute()

    def reset(self) -> None:
        self.pending = []
        super().reset()


def classification_metrics(
    num_classes: int, prefix: str, calibration: bool = True
) -> MetricCollection:
    """Accuracy plus macro precision, recall, F1 and AUROC, named ``{prefix}acc`` etc., and with
    ``calibration`` the expected calibration error (15 bins, l1) as ``{prefix}ece``; updates
    are buffered (:class:`BufferedMetrics`)."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "precision": MulticlassPrecision(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "auroc": MulticlassAUROC(num_classes),
    }
    if calibration:
        metrics["ece"] = MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")
    return BufferedMetrics(metrics, prefix=prefix)


def regression_metrics(prefix: str) -> MetricCollection:
    """MAE, RMSE, R² and Spearman's rank correlation of predictions ``[B]`` against targets,
    named ``{prefix}mae`` etc."""
    metrics = {
        "mae": MeanAbsoluteError(),
        "rmse": MeanSquaredError(squared=False),
        "r2": R2Score(),
        "spearman": SpearmanCorrCoef(),
    }
    return BufferedMetrics(metrics, prefix=prefix)


def task_metrics(task: str, num_classes: int, prefix: str, calibration: bool = True):
    """The metric collection of ``task`` (classification or regression)."""
    if task == "regression":
        return regression_metrics(prefix)
    return classification_metrics(num_classes, prefix, calibration=calibration)
