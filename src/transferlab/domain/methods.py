"""Domain-adaptation methods as small modules: ``method(source_feats, target_feats, progress)``
returns the unweighted alignment loss and extra metrics to log.

Config files build them with ``_partial_: true``; the training module calls the partial with
``in_features`` (the backbone's feature width) once the backbone exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.domain.core import coral, dann_lambda, gaussian_mmd, grad_reverse
from transferlab.errors import ConfigError


class Alignment(nn.Module):
    """Base of every method: ``weight`` scales its loss in the training objective."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        if weight < 0:
            raise ConfigError(f"domain_adaptation.weight must be >= 0, got {weight}.")
        self.weight = weight

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, progress: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class DANN(Alignment):
    """Domain-adversarial training (Ganin & Lempitsky 2015).

    A domain classifier (MLP) learns to tell source features (label 0) from target features
    (label 1); it sees them through a gradient-reversal layer, so the backbone receives the
    opposite gradient and learns features the classifier cannot separate.

    Args:
        in_features: backbone feature width.
        hidden: hidden widths of the domain classifier.
        lambda_max: final gradient-reversal factor.
        gamma: steepness of the factor's schedule ``2 / (1 + exp(-gamma p)) - 1``.
        dropout: dropout before each domain-classifier layer.
        weight: scale of the domain loss.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (256, 256),
        lambda_max: float = 1.0,
        gamma: float = 10.0,
        dropout: float = 0.0,
        weight: float = 1.0,
    ):
        super().__init__(weight)
        if lambda_max < 0:
            raise ConfigError(f"domain_adaptation.lambda_max must be >= 0, got {lambda_max}.")
        self.lambda_max, self.gamma = lambda_max, gamma
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Dropout(dropout), nn.Linear(width, 1)]
        self.classifier = nn.Sequential(*layers)

    def domain_logits(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Domain-classifier logits of both batches (no reversal), source first."""
        return self.classifier(torch.cat([source, target])).squeeze(-1)

    def forward(self, source, target, progress):
        coeff = dann_lambda(progress, self.lambda_max, self.gamma)
        logits = self.domain_logits(grad_reverse(source, coeff), grad_reverse(target, coeff))
        labels = torch.cat([source.new_zeros(len(source)), target.new_ones(len(target))])
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        acc = ((logits.detach() > 0).float() == labels).float().mean()
        return loss, {"train/domain_acc": acc, "train/grl_lambda": torch.tensor(coeff)}


class MMD(Alignment):
    """Multi-kernel Gaussian MMD between source and target features (DAN, Long et al. 2015).

    Args:
        in_features: backbone feature width (unused; the kernels need no parameters).
        bandwidths: kernel widths relative to the batch's mean squared distance.
        weight: scale of the MMD loss.
    """

    def __init__(
        self,
        in_features: int,
        bandwidths: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        weight: float = 1.0,
    ):
        super().__init__(weight)
        if not bandwidths or min(bandwidths) <= 0:
            raise ConfigError(
                f"domain_adaptation.bandwidths must be positive numbers, got {list(bandwidths)}."
            )
        self.bandwidths = tuple(float(b) for b in bandwidths)

    def forward(self, source, target, progress):
        return gaussian_mmd(source, target, self.bandwidths), {}


class CORAL(Alignment):
    """Deep CORAL: align second-order statistics of source and target features.

    Args:
        in_features: backbone feature width (unused).
        weight: scale of the CORAL loss.
    """

    def __init__(self, in_features: int, weight: float = 1.0):
        super().__init__(weight)

    def forward(self, source, target, progress):
        return coral(source, target), {}
