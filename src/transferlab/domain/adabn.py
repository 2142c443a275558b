"""AdaBN (Li et al. 2016, "Revisiting Batch Normalization for Practical Domain Adaptation"):
a network trained on the source is applied to the target with every BatchNorm layer's running
statistics re-estimated on unlabelled target images. No weight changes, no target labels."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BatchNormStatistics = list[dict[str, torch.Tensor]]
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def read_statistics(model: nn.Module) -> BatchNormStatistics:
    """A copy of every BatchNorm layer's running statistics, in module order."""
    return [{k: getattr(bn, k).clone() for k in _BUFFERS} for bn in batchnorm_layers(model)]


def write_statistics(model: nn.Module, stats: BatchNormStatistics) -> None:
    for bn, saved in zip(batchnorm_layers(model), stats, strict=True):
        for k in _BUFFERS:
            getattr(bn, k).copy_(saved[k])


@torch.no_grad()
def estimate_statistics(
    model: nn.Module, batches: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], object]
) -> BatchNormStatistics:
    """BatchNorm statistics of ``model`` on ``batches`` (the plain average over all of them).

    Args:
        model: the network whose BatchNorm layers are re-estimated; it is left as it was.
        batches: input batches of the new domain.
        forward: runs one batch through ``model`` (normalising inputs as training did).
    """
    layers = batchnorm_layers(model)
    saved, settings = read_statistics(model), [(bn.momentum, bn.training) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # None: a cumulative average, so every batch counts the same
        bn.train()
    try:
        for x in batches:
            forward(x)
        return read_statistics(model)
    finally:
        write_statistics(model, saved)
        for bn, (momentum, training) in zip(layers, settings, strict=True):
            bn.momentum = momentum
            bn.train(training)


@contextmanager
def using_statistics(model: nn.Module, stats: BatchNormStatistics | None) -> Iterator[None]:
    """Run ``model`` with ``stats`` as its BatchNorm statistics, restored afterwards; None
    leaves the model as it is."""
    if stats is None:
        yield
        return
    saved = read_statistics(model)
    write_statistics(model, stats)
    try:
        yield
    finally:
        write_statistics(model, saved)
