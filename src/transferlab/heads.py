"""Classifier heads on top of pooled backbone features."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from transferlab.errors import ConfigError


def create_head(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (),
    batch_norm: bool = False,
    dropout: float = 0.0,
    activation: str = "relu",
) -> nn.Sequential:
    """A linear head (``hidden=[]``) or an MLP: [Linear -> (BatchNorm) -> act -> (Dropout)]* -> Linear.

    Args:
        in_features: backbone feature dimension.
        num_classes: output classes.
        hidden: hidden layer widths; empty gives a linear classifier.
        batch_norm: BatchNorm1d after each hidden linear layer.
        dropout: dropout before every linear layer (0 disables it).
        activation: ``relu`` or ``gelu``.
    """
    acts = {"relu": nn.ReLU, "gelu": nn.GELU}
    if activation not in acts:
        raise ConfigError(f"head.activation must be one of {sorted(acts)}, got '{activation}'.")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(acts[activation]())
        width = h
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
