"""Training objectives: cross-entropy for classes, squared or absolute error for a continuous
target (regression, the whitepaper's section 12.2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.errors import ConfigError

# loss name -> the task it trains; "auto" follows the data
LOSSES = {"cross_entropy": "classification", "mse": "regression", "mae": "regression"}


class RegressionLoss(nn.Module):
    """Mean squared (``mse``) or absolute (``mae``) error of a one-output head
    (``[B, 1]`` predictions against ``[B]`` targets)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prediction, target = prediction.squeeze(-1), target.to(prediction.dtype)
        if self.kind == "mse":
            return F.mse_loss(prediction, target)
        return F.l1_loss(prediction, target)


def loss_task(name: str, data_task: str) -> str:
    """The task the loss ``name`` trains on data of ``data_task``; a mismatch is refused."""
    if data_task not in ("classification", "regression"):
        raise ValueError(f"unknown data task {data_task!r}")  # a programming error, not input
    if name != "auto" and name not in LOSSES:
        raise ConfigError(f"loss.name must be auto or one of {', '.join(LOSSES)}, got {name!r}.")
    task = data_task if name == "auto" else LOSSES[name]
    if task != data_task:
        fix = "loss=mse or loss=mae" if data_task == "regression" else "loss=cross_entropy"
        raise ConfigError(
            f"loss={name} trains a {task} model, but this data has a {data_task} target; "
            f"use {fix} (or loss=auto)."
        )
    return task


def create_loss(name: str, data_task: str, label_smoothing: float = 0.0) -> nn.Module:
    """The criterion for ``name`` (``auto``: cross-entropy for classes, MSE for a number)."""
    task = loss_task(name, data_task)
    if task == "classification":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if label_smoothing:
        raise ConfigError("loss.label_smoothing applies to classes only; set it to 0.")
    return RegressionLoss("mae" if name == "mae" else "mse")
