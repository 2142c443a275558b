"""BatchNorm running statistics: read, write, and re-estimate them on chosen batches.

Two methods rest on re-estimating them with the weights fixed:

- AdaBN (Li et al. 2016, "Revisiting Batch Normalization for Practical Domain Adaptation"): a
  network trained on the source is applied to the target with every BatchNorm layer's running
  statistics re-estimated on unlabelled target images (:func:`estimate_statistics`).
- Precise BatchNorm (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): before each
  evaluation, the running statistics of the layers that train are re-estimated on the training
  images with the current weights (:func:`reestimate_statistics`). The running averages
  training keeps lag behind weights that move fast, which with few batches an epoch and a
  network trained from scratch leaves evaluation near chance while training accuracy is 100%.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

BatchNormStatistics = list[dict[str, torch.Tensor]]
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def read_layer_statistics(layers: list[_BatchNorm]) -> BatchNormStatistics:
    return [{k: getattr(bn, k).clone() for k in _BUFFERS} for bn in layers]


def write_layer_statistics(layers: list[_BatchNorm], stats: BatchNormStatistics) -> None:
    for bn, saved in zip(layers, stats, strict=True):
        for k in _BUFFERS:
            getattr(bn, k).copy_(saved[k])


def read_statistics(model: nn.Module) -> BatchNormStatistics:
    """A copy of every BatchNorm layer's running statistics, in module order."""
    return read_layer_statistics(batchnorm_layers(model))


def write_statistics(model: nn.Module, stats: BatchNormStatistics) -> None:
    write_layer_statistics(batchnorm_layers(model), stats)


@torch.no_grad()
def reestimate_statistics(
    layers: list[_BatchNorm], batches: Iterable, forward: Callable[[object], object]
) -> int:
    """Replace the running statistics of ``layers`` by their plain average over ``batches``.

    Each layer is in training mode for the pass; its momentum and mode are restored after.
    Returns the number of batches seen; with none, the statistics are left as they were.
    """
    saved, settings = read_layer_statistics(layers), [(bn.momentum, bn.training) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # None: a cumulative average, so every batch counts the same
        bn.train()
    seen = 0
    try:
        for x in batches:
            forward(x)
            seen += 1
    finally:
        if not seen:
            write_layer_statistics(layers, saved)
        for bn, (momentum, training) in zip(layers, settings, strict=True):
            bn.momentum = momentum
            bn.train(training)
    return seen


def estimate_statistics(
    model: nn.Module, batches: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], object]
) -> BatchNormStatistics:
    """BatchNorm statistics of ``model`` on ``batches`` (the plain average over all of them).

    Args:
        model: the network whose BatchNorm layers are re-estimated; it is left as it was.
        batches: input batches of the new domain.
        forward: runs one batch through ``model`` (normalising inputs as training did).
    """
    saved = read_statistics(model)
    try:
        reestimate_statistics(batchnorm_layers(model), batches, forward)
        return read_statistics(model)
    finally:
        write_statistics(model, saved)


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


def in_fixed_random_order(loader: DataLoader, seed: int = 0) -> DataLoader:
    """``loader``'s dataset in one fixed random order, batched as ``loader`` batches it.

    Re-estimation averages per-batch statistics, which is right only when every batch is a
    sample of the whole set; a split stored class by class would give one-class batches and far
    too small variances. The order is drawn from its own generator: no global RNG is touched.
    """
    order = torch.randperm(len(loader.dataset), generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=order.tolist(),
        collate_fn=loader.collate_fn,
    )  # fmt: skip


# at most this many training batches per re-estimation (precise BN): 640 images at batch 64
PRECISE_BN_BATCHES = 10


def recalibrate_batchnorm(module) -> int:
    """Precise BN on a :class:`~transferlab.module.TransferModule` (``strategy.precise_bn``):
    the running statistics of the backbone's BatchNorm layers that training updates are replaced
    by their average over the first ``PRECISE_BN_BATCHES`` of ``module.statistics_batches()``.

    Layers of frozen groups under ``strategy.bn=frozen`` keep theirs; a run on cached features
    (no backbone pass) or one without a datamodule is left alone. Returns the batches used.
    """
    if module.inputs_are_features or module.trainer.datamodule is None:
        return 0
    frozen = set(module.frozen_batchnorms()) if module.strategy.bn == "frozen" else set()
    layers = [bn for bn in batchnorm_layers(module.backbone) if bn not in frozen]
    if not layers:
        return 0
    batches = itertools.islice(module.statistics_batches(), PRECISE_BN_BATCHES)
    return reestimate_statistics(layers, batches, module.image_features)
