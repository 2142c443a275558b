"""Functional cores of domain adaptation: gradient reversal, the DANN schedules, and the
MMD and CORAL discrepancies between a source and a target batch of features."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from transferlab.errors import ConfigError


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``-coeff`` backwards."""
    return _GradientReversal.apply(x, coeff)


def dann_lambda(progress: float, lambda_max: float = 1.0, gamma: float = 10.0) -> float:
    """DANN's adaptation factor ``lambda_max * (2 / (1 + exp(-gamma * p)) - 1)``, p in [0, 1].

    It rises from 0 to about ``lambda_max``, so the domain signal cannot swamp the features
    while the label classifier is still random.
    """
    p = min(max(progress, 0.0), 1.0)
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)


def gaussian_mmd(
    source: torch.Tensor, target: torch.Tensor, bandwidths: Sequence[float] = (0.25, 0.5, 1, 2, 4)
) -> torch.Tensor:
    """Squared MMD (biased estimate) with a sum of Gaussian kernels.

    Each kernel is ``exp(-d^2 / (b * s))``: ``b`` is a factor from ``bandwidths`` and ``s`` the
    mean squared distance over the joint batch (detached), so the set follows the feature scale
    as training changes it (the multi-kernel recipe of DAN, Long et al. 2015).

    Args:
        source: ``[n, d]`` features.
        target: ``[m, d]`` features.
        bandwidths: kernel widths relative to the mean squared distance.
    """
    if not bandwidths or min(bandwidths) <= 0:
        raise ConfigError(f"MMD bandwidths must be positive numbers, got {list(bandwidths)}.")
    joint = torch.cat([source, target])
    d2 = _squared_distances(joint, joint)
    n = len(source)
    scale = d2.detach().sum() / max(1, len(joint) ** 2 - len(joint))
    kernel = sum(torch.exp(-d2 / (b * scale.clamp_min(1e-12))) for b in bandwidths)
    kss, ktt, kst = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return kss.mean() + ktt.mean() - 2 * kst.mean()


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased feature covariance of ``[n, d]`` samples (a batch of one gives zeros)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / max(1, len(x) - 1)


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko 2016): ``||C_s - C_t||_F^2 / (4 d^2)``."""
    d = source.shape[1]
    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)
