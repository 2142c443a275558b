"""The datamodule every text source shares: tokenised once, batches padded per batch.

A source implements :meth:`TextDataModule.load` and returns :class:`TextSplits` (raw texts and
labels). ``setup`` tokenises every split once with the backbone's tokenizer (the build layer
passes it), truncating to ``max_length``; each batch is padded to its own longest sequence, so
short texts (single words, as in the VADER lexicon) cost a few positions, not ``max_length``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from transferlab.data.base import stratified_indices
from transferlab.data.sampling import SplitLoaders
from transferlab.errors import ConfigError

TASKS = ("classification", "regression")


@dataclass
class TextSplits:
    """Texts and labels (int64 class indices, or float32 targets) per split, and the class
    names (one name, the target's, for regression)."""

    train: tuple[list[str], torch.Tensor]
    val: tuple[list[str], torch.Tensor]
    test: tuple[list[str], torch.Tensor]
    class_names: list[str]


class TokenDataset(Dataset):
    """Token id sequences (1-D int64 tensors of varying length) and their labels."""

    def __init__(self, ids: list[torch.Tensor], labels: torch.Tensor):
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.ids[i], self.labels[i]


class PadCollate:
    """Pads a batch to its longest sequence: ``({input_ids, attention_mask}, labels)``."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items):
        seqs, labels = zip(*items, strict=True)
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)], mask[row, : len(s)] = s, 1
        return {"input_ids": ids, "attention_mask": mask}, torch.stack(labels)


def split_parts(n: int, strata: np.ndarray | None, fractions, seed: int) -> list[np.ndarray]:
    """(train, val, test) index arrays: stratified by ``strata`` when given, else a seeded
    permutation cut by the fractions (a regression target without strata)."""
    if strata is not None:
        return stratified_indices(strata, fractions, seed)
    order = np.random.default_rng(seed).permutation(n)
    sizes = [int(round(f * n)) for f in fractions]
    held = np.split(order[: sum(sizes)], np.cumsum(sizes)[:-1])
    return [np.sort(order[sum(sizes) :]), *held]


class TextDataModule(SplitLoaders):
    """Base of every text source.

    Args:
        tokenizer: a Hugging Face tokenizer (passed by the build layer from the backbone).
        max_length: tokens kept per text, special tokens included.
        train_size: keep this many training texts (stratified for classes), for sample
            efficiency studies and short CPU runs; null keeps them all.
        batch_size: texts per batch.
        num_workers: DataLoader worker processes.
        seed: seed of the deterministic splits and of the training order.
        pin_memory: pin host memory when training on a GPU.
        drop_last: drop the last incomplete training batch.
    """

    task_type = "classification"
    flip_safe = False

    def __init__(
        self,
        tokenizer=None,
        max_length: int = 64,
        train_size: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = True,
        drop_last: bool = False,
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be a whole number >= 1, got {batch_size!r}.")
        if not isinstance(max_length, int) or max_length < 2:
            raise ConfigError(f"data.max_length must be a whole number >= 2, got {max_length!r}.")
        if train_size is not None and (not isinstance(train_size, int) or train_size < 1):
            raise ConfigError(f"data.train_size must be null or >= 1, got {train_size!r}.")
        self.tokenizer, self.max_length, self.train_size = tokenizer, max_length, train_size
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.pin_memory, self.drop_last = pin_memory, drop_last
        self.splits: TextSplits | None = None  # token ids in place of texts after setup()
        self.skipped: list[tuple[str, str]] = []

    def load(self) -> TextSplits:
        raise NotImplementedError

    # -- facts the model builder reads after setup() ------------------------------------------
    @property
    def num_classes(self) -> int:
        """Classes, or 1 (one output) for a regression target."""
        return len(self._loaded().class_names)

    @property
    def class_names(self) -> list[str]:
        return self._loaded().class_names

    @property
    def channels(self) -> int:
        return 1  # recorded in checkpoints like an image set's; text has no channels

    @property
    def normalization(self) -> tuple[list[float], list[float]]:
        return [0.0], [1.0]  # token ids are never normalised

    def augments_training(self) -> bool:
        return False

    def _loaded(self) -> TextSplits:
        if self.splits is None:
            self.setup()
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        if self.tokenizer is None:
            raise ConfigError(
                "Text data needs a text backbone to tokenise with; choose backbone=minilm or "
                "backbone=hf backbone.name=<model>."
            )
        raw = self.load()
        train = self.subsample(*raw.train)
        if len(train[1]) == 0:
            raise ConfigError("The training split is empty; check the data settings.")
        encoded = {
            name: (self.encode(texts), labels)
            for name, (texts, labels) in (("train", train), ("val", raw.val), ("test", raw.test))
        }
        self.splits = TextSplits(**encoded, class_names=raw.class_names)

    def subsample(self, texts: list[str], labels: torch.Tensor):
        """The first ``train_size`` texts of a seeded stratified order (all when null)."""
        if self.train_size is None or self.train_size >= len(labels):
            return texts, labels
        strata = labels.numpy() if self.task_type == "classification" else None
        _, keep = split_parts(len(labels), strata, [self.train_size / len(labels)], self.seed)
        keep = np.sort(keep)
        return [texts[i] for i in keep], labels[keep]

    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return [torch.tensor(seq, dtype=torch.long) for seq in ids]

    def _loader(self, split: str, train: bool) -> DataLoader:
        ids, labels = getattr(self._loaded(), split)
        pad = PadCollate(self.tokenizer.pad_token_id or 0)
        return self.loader(TokenDataset(ids, labels), train=train, collate_fn=pad)
