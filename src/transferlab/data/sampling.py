"""A shuffling sampler whose order depends only on (seed, epoch).

torch's ``RandomSampler`` draws its order from the global RNG, whose state depends on everything
that ran before (model init, dropout, augmentation). A resumed run does not replay that history,
so it would see other batches than the uninterrupted run. Seeding each epoch's permutation from
(seed, epoch) makes resume exact; Lightning calls ``set_epoch`` on it (also through its
distributed wrapper under DDP).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(n)``, fixed by ``seed`` and the current epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n
