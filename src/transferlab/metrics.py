"""The metrics every stage logs: accuracy, macro precision, recall, F1, AUROC and calibration."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from transferlab.calibration import ECE_BINS


def classification_metrics(
    num_classes: int, prefix: str, calibration: bool = True
) -> MetricCollection:
    """Accuracy plus macro precision, recall, F1 and AUROC, named ``{prefix}acc`` etc., and with
    ``calibration`` the expected calibration error (15 bins, l1) as ``{prefix}ece``."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "precision": MulticlassPrecision(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "auroc": MulticlassAUROC(num_classes),
    }
    if calibration:
        metrics["ece"] = MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")
    return MetricCollection(metrics, prefix=prefix)
