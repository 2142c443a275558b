"""The training-loop hook of domain adaptation: a TransferModule that trains on labelled source
batches and unlabelled target batches together, and scores both domains."""

from __future__ import annotations

import math

import torch

from transferlab.domain.methods import Alignment
from transferlab.metrics import classification_metrics
from transferlab.module import TransferModule

ORACLE_MONITOR = "val_target/acc"


class DomainAdaptationModule(TransferModule):
    """Source classification + ``alignment.weight`` x the alignment loss on source/target features.

    Metric names: ``val/…`` is the source validation set (it picks the best checkpoint, so
    model selection never looks at target labels), ``val_target/…`` the target's; ``test/…`` is
    the target test set and ``test_source/…`` the source's.

    Args:
        *args, **kwargs: see :class:`TransferModule`.
        alignment: the method (DANN, MMD, CORAL), or None for source-only training.
        target_labels: whether the target has labelled val/test sets (loader order follows).
        oracle: also keep the checkpoint that is best on target validation (``val_target/acc``).
    """

    def __init__(
        self,
        *args,
        alignment: Alignment | None = None,
        target_labels: bool = True,
        oracle: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.alignment, self.target_labels, self.oracle = alignment, target_labels, oracle
        num_classes = self.num_classes
        self.val_target_metrics = classification_metrics(num_classes, "val_target/")
        self.test_source_metrics = classification_metrics(num_classes, "test_source/")

    def named_group_parameters(self):
        # the domain classifier trains with the head: same LR, and the group list stays static
        groups = super().named_group_parameters()
        alignment = getattr(self, "alignment", None)  # unset while the base class initialises
        if alignment is None:
            return groups
        name, head = groups[-1]
        extra = [(f"alignment.{n}", p) for n, p in alignment.named_parameters()]
        return [*groups[:-1], (name, head + extra)]

    def progress(self) -> float:
        """Fraction of training done, in [0, 1] (0 outside a fit)."""
        if self._trainer is None:
            return 0.0
        total = self.trainer.estimated_stepping_batches
        return min(1.0, self.global_step / total) if math.isfinite(total) and total else 0.0

    def adaptation_loss(
        self, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, progress: float
    ) -> torch.Tensor:
        """Source cross-entropy plus the weighted alignment loss (logged as ``train/da_loss``)."""
        if self.alignment is None:
            return self.classification_loss(xs, ys)[0]
        loss, features = self.classification_loss(xs, ys, unlabelled=xt)
        n = len(features) - len(xt)
        da_loss, extra = self.alignment(features[:n], features[n:], progress)
        self.log("train/da_loss", da_loss, on_step=False, on_epoch=True)
        for name, value in extra.items():
            self.log(name, value, on_step=False, on_epoch=True)
        return loss + self.alignment.weight * da_loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        xs, ys = batch["source"]
        xt, _ = batch["target"]  # the target's labels are all -1 (unknown) here
        return self.total_loss(self.adaptation_loss(xs, ys, xt, self.progress()))

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:
            self._eval_step(batch, self.val_metrics, "val")
        else:
            self._eval_step(batch, self.val_target_metrics, "val_target")

    def eval_metrics(self, stage: str):
        extra = self.val_target_metrics if stage == "val" else self.test_source_metrics
        return [*super().eval_metrics(stage), extra]

    def feature_cache_blockers(self) -> list[str]:
        return ["a source/target pair trains on both domains (use single-domain data)"]

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.target_labels and dataloader_idx == 0:
            super().test_step(batch, batch_idx)
        else:
            self._eval_step(batch, self.test_source_metrics, "test_source")
