"""The training-loop hook of domain adaptation: a TransferModule that trains on labelled source
batches and unlabelled target batches together, and scores both domains."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from transferlab.batchnorm import (
    batchnorm_layers,
    estimate_statistics,
    in_fixed_random_order,
    using_statistics,
)
from transferlab.domain.methods import Alignment
from transferlab.errors import ConfigError
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
        target_mean, target_std: the target images' input statistics (default: the source's).
        target_bn: AdaBN: score the target with BatchNorm statistics re-estimated on its
            unlabelled training images at the start of every validation and test.
    """

    def __init__(
        self,
        *args,
        alignment: Alignment | None = None,
        target_labels: bool = True,
        oracle: bool = False,
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        target_bn: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.alignment, self.target_labels, self.oracle = alignment, target_labels, oracle
        for name, given in (("target_mean", target_mean), ("target_std", target_std)):
            own = getattr(self, name.removeprefix("target_"))
            value = own.clone() if given is None else torch.tensor(given).view_as(own).float()
            self.register_buffer(name, value)
        # checkpoints from before per-domain statistics hold none: the source's then apply
        self._register_load_state_dict_pre_hook(_default_target_statistics)
        if target_bn and not batchnorm_layers(self):
            raise ConfigError(
                "domain_adaptation=adabn re-estimates BatchNorm statistics on the target, but "
                "this network has no BatchNorm layer; choose one that has (for example "
                "backbone=dann_mnist backbone.batch_norm=true, or backbone=resnet18)."
            )
        self.target_bn, self._target_bn_stats = target_bn, None
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
        self.epoch_means.add("train/da_loss", da_loss)  # logged per epoch, as train/loss
        for name, value in extra.items():
            self.epoch_means.add(name, value)
        return loss + self.alignment.weight * da_loss

    def as_target(self, x: torch.Tensor) -> torch.Tensor:
        """Target images normalised with the target's statistics."""
        return self.normalised(x, self.target_mean, self.target_std)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        xs, ys = batch["source"]
        xt, _ = batch["target"]  # the target's labels are all -1 (unknown) here
        return self.total_loss(self.adaptation_loss(xs, ys, self.as_target(xt), self.progress()))

    def _on_target(self, step, batch, *args):
        """``step(batch, *args)`` on a target batch: its own statistics (and AdaBN's)."""
        x, y = batch
        with using_statistics(self, self._target_bn_stats):
            return step((self.as_target(x), y), *args)

    def refresh_target_statistics(self) -> None:
        """AdaBN: re-estimate BatchNorm statistics on the target's unlabelled training images."""
        dm = self._trainer.datamodule if self._trainer is not None else None
        if not self.target_bn or dm is None:
            return
        batches = (x.to(self.device) for x, _ in dm.target_train_loader())
        self._target_bn_stats = estimate_statistics(
            self, batches, lambda x: self.head(self.backbone(self.as_target(x)))
        )

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()  # precise BN first: AdaBN then starts from it
        self.refresh_target_statistics()

    def statistics_batches(self):
        """Source training images; with an alignment loss, each batch joined by target training
        images, as the training step passes them through the backbone together."""
        dm = self.trainer.datamodule
        source = (x for x, _ in in_fixed_random_order(dm.eval_dataloader("train")))
        if self.alignment is None:
            yield from (x.to(self.device) for x in source)
            return
        target = (x for x, _ in in_fixed_random_order(dm.target_train_loader(), seed=1))
        for xs, xt in zip(source, target, strict=False):  # up to the shorter: pairs like training's
            xs, xt = xs.to(self.device), xt.to(self.device)
            yield torch.cat([self.normalised(xs), self.as_target(xt)])

    def on_test_epoch_start(self) -> None:
        self.refresh_target_statistics()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:
            self._eval_step(batch, self.val_metrics, "val")
        else:
            self._on_target(self._eval_step, batch, self.val_target_metrics, "val_target")

    def eval_metrics(self, stage: str):
        extra = self.val_target_metrics if stage == "val" else self.test_source_metrics
        return [*super().eval_metrics(stage), extra]

    def feature_cache_blockers(self) -> list[str]:
        return ["a source/target pair trains on both domains (use single-domain data)"]

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.target_labels and dataloader_idx == 0:
            self._on_target(super().test_step, batch, batch_idx)
        else:
            self._eval_step(batch, self.test_source_metrics, "test_source")


def _default_target_statistics(module, state_dict, prefix, *args) -> None:
    for name in ("mean", "std"):
        if f"{prefix}{name}" in state_dict:
            state_dict.setdefault(f"{prefix}target_{name}", state_dict[f"{prefix}{name}"])
