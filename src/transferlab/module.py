"""The LightningModule: backbone + head + loss + metrics, with static per-layer-group optimizer
param groups whose LR multipliers the strategy sets. Its layer groups
(:mod:`transferlab.layer_groups`) and its validation and test steps
(:mod:`transferlab.eval_steps`) are written apart."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.data import extract_batch_size
from torch import nn

from transferlab.backbones import Backbone
from transferlab.batchnorm import in_fixed_random_order, recalibrate_batchnorm
from transferlab.errors import ConfigError
from transferlab.eval_steps import EvaluationSteps
from transferlab.layer_groups import LayerGroups
from transferlab.loss_log import LOSS, EpochMeans, log_epoch_means, log_step_loss
from transferlab.metrics import task_metrics
from transferlab.optim import MultiplierLR, build_param_groups
from transferlab.strategies import Strategy, backbone_multipliers


def _stochastic(m: nn.Module) -> bool:
    """Whether ``m`` is an active dropout or drop-path layer."""
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return m.p > 0
    return type(m).__name__ == "DropPath" and getattr(m, "drop_prob", 0.0) > 0


class TransferModule(LayerGroups, EvaluationSteps, pl.LightningModule):
    """Model = head(backbone(normalise(images))), or head(backbone(tokens)) for text.

    Args:
        backbone: feature extractor with ordered layer groups.
        head: maps ``backbone.num_features`` to ``num_classes`` logits.
        num_classes: number of classes.
        strategy: which groups train and their LR multipliers.
        optimizer: ``torch.optim`` class partial carrying ``lr`` (the head's LR) and options.
        schedule: ``schedule(step, total_steps) -> factor``, or None for a constant LR.
        label_smoothing: cross-entropy label smoothing.
        mean, std: per-channel input statistics; uint8 inputs are normalised with them.
        extra: plain data stored in every checkpoint (resolved config, class names).
        batch_augment: ``(x, y) -> (x, soft targets)`` applied to training batches on device
            (Mixup, CutMix), or None.
        regularizer: ``module -> penalty`` added to the training loss (L2-SP, EWC), or None.
        loss: the criterion (:func:`transferlab.losses.create_loss`); None: cross-entropy with
            ``label_smoothing``.
        task: ``classification``, or ``regression`` (one output, ``num_classes=1``; MAE, RMSE,
            R² and Spearman in place of the classification metrics).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        num_classes: int,
        strategy: Strategy,
        optimizer: Callable[..., torch.optim.Optimizer],
        schedule: Callable[[int, int], float] | None = None,
        label_smoothing: float = 0.0,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        extra: dict | None = None,
        batch_augment: Callable | None = None,
        regularizer: Callable[[TransferModule], torch.Tensor] | None = None,
        loss: nn.Module | None = None,
        task: str = "classification",
    ):
        super().__init__()
        lr = getattr(optimizer, "keywords", {}).get("lr")
        if lr is None or not lr > 0:
            raise ConfigError(f"optimizer.lr must be a positive number, got {lr}.")
        self.backbone, self.head, self.strategy = backbone, head, strategy
        self.optimizer_factory, self.schedule, self.base_lr = optimizer, schedule, lr
        self.criterion = loss or nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.task = task
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.extra = extra or {}
        self.batch_augment, self.regularizer = batch_augment, regularizer
        self.inputs_are_features = False
        self.lr_multipliers = backbone_multipliers(strategy, len(backbone.groups)) + [1.0]
        self.apply_multipliers()
        self.num_classes = num_classes
        # training batches may be mixed (soft targets): their calibration says little, skip it
        self.train_metrics = task_metrics(task, num_classes, "train/", calibration=False)
        self.epoch_means = EpochMeans()  # the training losses, logged per epoch
        self.init_evaluation(task, num_classes)

    def __setattr__(self, name: str, value) -> None:
        # Lightning names the running hook here around every hook call, about 50 times a step;
        # nn.Module's __setattr__ would first check the string against parameters, modules
        # and buffers (1.3 us a call against 0.2 us, measured)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def has_validation(self) -> bool:
        return (
            self._trainer is not None
            and self.trainer.datamodule is not None
            and bool(len(self.trainer.datamodule.val_dataloader()))
        )

    def on_train_epoch_start(self) -> None:
        self.train()  # Lightning leaves the mode as built; re-apply the BN policy every epoch
        self.epoch_means.reset()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        loss = self.epoch_means.step.get(LOSS)
        self.epoch_means.end_step(extract_batch_size(batch))  # the size self.log would infer
        log_step_loss(self, loss)

    def on_validation_epoch_start(self) -> None:
        # during a fit only: a checkpoint scored later (best epoch, transferlab-eval) keeps the
        # statistics it was saved with
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        if self.strategy.precise_bn and fitting:
            recalibrate_batchnorm(self)

    def statistics_batches(self):
        """What training passes through the backbone, batch by batch, the evaluation way (a fixed
        random order, no augmentation): the training images. Precise BN runs on them."""
        for x, _ in in_fixed_random_order(self.trainer.datamodule.eval_dataloader("train")):
            yield x.to(self.device)

    def on_train_epoch_end(self) -> None:
        log_epoch_means(self, self.epoch_means.compute())
        self.epoch_means.reset()
        self.log_dict(self.train_metrics.compute())  # synced across DDP ranks by torchmetrics
        self.train_metrics.reset()

    # -- forward and steps -------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of a batch: images, or cached features once :meth:`accept_features`."""
        if self.inputs_are_features:  # batches of cached backbone features (transferlab.cache)
            return x
        return self.image_features(x)

    def image_features(self, x: torch.Tensor | dict) -> torch.Tensor:
        """Backbone features of images, or of a token batch (a dict: text backbones); uint8
        images are normalised here, on the module's device."""
        if isinstance(x, dict):
            return self.backbone(x)
        return self.backbone(self.normalised(x))

    def normalised(self, x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
        """Float inputs: uint8 images scaled and normalised with ``mean``/``std`` (default the
        module's); float batches are taken as normalised already."""
        if x.dtype != torch.uint8:
            return x
        mean, std = (self.mean, self.std) if mean is None else (mean, std)
        return (x.float() / 255 - mean) / std

    # -- training on cached features (transferlab.cache) --------------------------------------
    def feature_cache_blockers(self) -> list[str]:
        """Why this module's backbone features could change between epochs (empty: they cannot,
        and the head may train on features computed once)."""
        reasons = []
        if any(m > 0 for m in self.lr_multipliers[:-1]) or self.strategy.unfreeze is not None:
            reasons.append("the backbone trains (use strategy=feature_extraction)")
        if self.strategy.bn != "frozen":
            reasons.append("BatchNorm statistics update during training (strategy.bn=train)")
        if self.batch_augment is not None:
            reasons.append("batches are mixed (augmentation=none)")
        if any(_stochastic(m) for m in self.backbone.model.modules()):
            reasons.append("the backbone has active dropout or drop-path (set their rates to 0)")
        return reasons

    def accept_features(self) -> None:
        """From now on batches hold backbone features, not images (the head trains on them)."""
        blockers = self.feature_cache_blockers()
        if blockers:
            raise ConfigError(f"This run cannot train on cached features: {blockers[0]}.")
        self.inputs_are_features = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the metrics compare with the labels: class probabilities, or the predicted
        number of a regression head."""
        return logits.squeeze(-1) if self.task == "regression" else logits.softmax(-1)

    def classification_loss(
        self, x: torch.Tensor, y: torch.Tensor, unlabelled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy, features) on a training batch, after the batch augmentation if any.

        Mixed batches train on soft targets; training accuracy is always against the hard labels.
        ``unlabelled`` images share the backbone pass, so batch norm sees them in the same batch;
        their features follow those of ``x`` in the returned tensor.
        """
        target = y
        if self.batch_augment is not None:
            x, target = self.batch_augment(x, y)
        if unlabelled is not None:  # normalised apart: a domain may have its own statistics
            x = torch.cat([self.normalised(x), self.normalised(unlabelled)])
        features = self.features(x)
        logits = self.head(features[: len(y)])  # len(y): a token batch is a dict
        # updated every step, logged once per epoch (on_train_epoch_end): no per-step log cost
        self.train_metrics.update(self.scores(logits.detach()), y)
        return self.criterion(logits, target), features

    def total_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the regulariser's penalty (logged as ``train/reg_loss``); logs the sum
        as ``train/loss`` (:mod:`transferlab.loss_log`: no ``self.log`` call per step)."""
        if self.regularizer is not None:
            penalty = self.regularizer(self)
            self.epoch_means.add("train/reg_loss", penalty)
            loss = loss + penalty
        # not in the progress bar: it would read the step value as a Python number at every
        # step, a host-device sync on a GPU
        self.epoch_means.add(LOSS, loss)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, _ = self.classification_loss(x, y)
        return self.total_loss(loss)

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        total = 0  # the schedule's length; MultiplierLR rejects unknown ones
        if self.schedule is not None:
            total = self.trainer.estimated_stepping_batches
            total = int(total) if math.isfinite(total) else 0
        optimizer, scheduler = self.build_optimizer(total)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def build_optimizer(self, total_steps: int):
        """(optimizer, per-step LR scheduler or None) over every param group, built once: one
        per layer group (+ a no-decay half), head last; ``total_steps`` sizes the schedule."""
        kw = self.optimizer_factory.keywords
        no_decay = getattr(self.backbone.model, "no_weight_decay", lambda: set())()
        groups = build_param_groups(
            self.named_group_parameters(),
            self.lr_multipliers,
            self.base_lr,
            kw.get("weight_decay", 0.0),
            no_decay_names=set(no_decay),
        )
        optimizer = self.optimizer_factory(groups)
        if self.schedule is None:
            return optimizer, None
        return optimizer, MultiplierLR(optimizer, self.schedule, total_steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["transferlab"] = {**self.extra, "lr_multipliers": list(self.lr_multipliers)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("transferlab", {}).get("lr_multipliers")
        if saved is not None and len(saved) == len(self.lr_multipliers):
            self.lr_multipliers = list(saved)
            self.apply_multipliers()
