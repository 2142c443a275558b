"""The metrics every stage logs: accuracy, macro precision, recall, F1, AUROC and calibration for
classes; MAE, RMSE, R² and Spearman correlation for a continuous target."""

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
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    SpearmanCorrCoef,
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


def regression_metrics(prefix: str) -> MetricCollection:
    """MAE, RMSE, R² and Spearman's rank correlation of predictions ``[B]`` against targets,
    named ``{prefix}mae`` etc."""
    metrics = {
        "mae": MeanAbsoluteError(),
        "rmse": MeanSquaredError(squared=False),
        "r2": R2Score(),
        "spearman": SpearmanCorrCoef(),
    }
    return MetricCollection(metrics, prefix=prefix)


def task_metrics(task: str, num_classes: int, prefix: str, calibration: bool = True):
    """The metric collection of ``task`` (classification or regression)."""
    if task == "regression":
        return regression_metrics(prefix)
    return classification_metrics(num_classes, prefix, calibration=calibration)
