"""A shuffling sampler whose order depends only on (seed, epoch), and the loaders every datamodule
builds on it.

torch's ``RandomSampler`` draws its order from the global RNG, whose state depends on everything
that ran before (model init, dropout, augmentation). A resumed run does not replay that history,
so it would see other batches than the uninterrupted run. Seeding each epoch's permutation from
(seed, epoch) makes resume exact; Lightning calls ``set_epoch`` on it (also through its
distributed wrapper under DDP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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


class SplitLoaders(pl.LightningDataModule):
    """The loaders of a datamodule with ``train``/``val``/``test`` splits: subclasses give
    :meth:`_loader`, which builds one with :meth:`loader`; training loaders shuffle with
    :class:`EpochShuffle`, every other loader keeps the stored order."""

    batch_size: int
    num_workers: int
    pin_memory: bool
    drop_last: bool
    seed: int

    def _loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def loader(self, dataset: Dataset, train: bool, collate_fn: Callable | None = None):
        """A loader over ``dataset`` with this datamodule's batch size, workers and order."""
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(dataset), self.seed) if train else None,
            drop_last=train and self.drop_last,
            collate_fn=collate_fn,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split (train too) the evaluation way: deterministic transform, fixed order."""
        return self._loader(split, train=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
