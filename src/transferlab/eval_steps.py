"""The module's validation and test steps: metrics updated per batch and logged once per
epoch, the test's confusion matrix and reliability bins."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from transferlab.calibration import ECE_BINS, ReliabilityBins
from transferlab.metrics import task_metrics


class EvaluationSteps:
    """Part of :class:`transferlab.module.TransferModule`: validation and test."""

    def init_evaluation(self, task: str, num_classes: int) -> None:
        """The validation and test metric collections, and the test's plots."""
        self.val_metrics = task_metrics(task, num_classes, "val/")
        self.test_metrics = task_metrics(task, num_classes, "test/")
        classes = task == "classification"  # a regression head has no classes to confuse
        self.test_confusion = MulticlassConfusionMatrix(num_classes) if classes else None
        self.confusion_matrix: torch.Tensor | None = None
        self.test_reliability = ReliabilityBins(ECE_BINS)
        self.reliability = None  # the last test's reliability bins (reliability_diagram.png)

    def eval_batch(self, x, y: torch.Tensor, metrics: MetricCollection) -> tuple:
        """(loss, logits) of an evaluation batch, with ``metrics`` updated by it."""
        logits = self(x)
        metrics.update(self.scores(logits), y)
        return self.criterion(logits, y), logits

    def update_test_plots(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add a test batch to the confusion matrix and the reliability bins (classifiers)."""
        if self.task == "regression":  # no classes to confuse or calibrate
            return
        self.test_confusion.update(logits.argmax(-1), y)
        self.test_reliability.update(logits.softmax(-1), y)

    def _eval_step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        x, y = batch
        # metrics updated every step, computed and logged once per epoch (log_epoch_metrics):
        # logging the collection at every step cost about 1.7 ms, more than a step on features
        loss, logits = self.eval_batch(x, y, metrics)
        # metric names carry the domain under adaptation; no "/dataloader_idx_N" suffix
        self.log(
            f"{stage}/loss",
            loss,
            on_epoch=True,
            prog_bar=stage == "val",
            sync_dist=True,
            add_dataloader_idx=False,
        )
        return logits

    def eval_metrics(self, stage: str) -> list[MetricCollection]:
        """The metric collections that the ``stage`` ("val" or "test") loaders update."""
        return [self.val_metrics] if stage == "val" else [self.test_metrics]

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's metrics over the epoch, then reset; compute syncs them across DDP ranks."""
        found = {}
        for metrics in self.eval_metrics(stage):
            if metrics.updated():  # a loader that ran this epoch
                found.update(metrics.compute())
            metrics.reset()
        return found

    def log_epoch_metrics(self, stage: str) -> None:
        found = self.epoch_metrics(stage)
        if found:
            self.log_dict(found)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, self.test_metrics, "test")
        self.update_test_plots(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")
        self.finish_test_plots()

    def finish_test_plots(self) -> None:
        """Keep the test's confusion matrix and reliability bins (for the run dir's plots)."""
        if self.task == "regression":
            return
        self.confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        self.reliability = self.test_reliability.compute()
        self.test_reliability.reset()
