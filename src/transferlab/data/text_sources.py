"""Text sources: CSV / JSONL files with text and label columns, and the VADER sentiment lexicon
(Hutto and Gilbert, ICWSM 2014), whose ~7,500 words, phrases and emoticons were each rated from
-4 (most negative) to +4 by ten people; it ships in the ``vaderSentiment`` wheel."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from transferlab.data.text import TASKS, TextDataModule, TextSplits, split_parts
from transferlab.errors import ConfigError

POLARITY = ["negative", "neutral", "positive"]


def read_rows(path: str | Path, columns: tuple[str, str]) -> list[tuple[str, str]]:
    """(text, label) of every row of a ``.csv`` (header row) or ``.jsonl`` (one object a line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Text file '{path}' does not exist; check the data.* file paths.")
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix in (".jsonl", ".json"):
            records = [json.loads(line) for line in f if line.strip()]
        elif path.suffix in (".csv", ".tsv"):
            records = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
        else:
            raise ConfigError(f"Text file '{path}' must end in .csv, .tsv or .jsonl.")
    if not records:
        raise ConfigError(f"Text file '{path}' holds no rows; give a file with at least one text.")
    missing = [c for c in columns if c not in records[0]]
    if missing:
        raise ConfigError(
            f"Text file '{path}' has no column '{missing[0]}' (its columns are "
            f"{', '.join(map(str, records[0]))}); set data.text_column and data.label_column."
        )
    return [(str(r[columns[0]]), str(r[columns[1]]).strip()) for r in records]


class TextFileData(TextDataModule):
    """Your own texts: ``train`` (+ ``val``, ``test``) files, or one file split by fractions.

    Args:
        train: a .csv / .tsv / .jsonl file with a text and a label column.
        val, test: files of the same form; null holds out ``val_fraction`` / ``test_fraction``
            of ``train`` instead (stratified by class for classification).
        text_column, label_column: the column names.
        task: ``classification`` (labels are class names) or ``regression`` (numbers).
        val_fraction, test_fraction: held-out shares when a file is not given.
        **kwargs: see :class:`TextDataModule`.
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        task: str = "classification",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if task not in TASKS:
            raise ConfigError(f"data.task must be one of {TASKS}, got {task!r}.")
        self.files = {"train": train, "val": val, "test": test}
        self.columns, self.task_type = (text_column, label_column), task
        self.fractions = (
            val_fraction if val is None else 0.0,
            test_fraction if test is None else 0.0,
        )

    def load(self) -> TextSplits:
        rows = {k: read_rows(v, self.columns) for k, v in self.files.items() if v}
        texts, raw = zip(*rows["train"], strict=True)
        names = sorted(set(raw)) if self.task_type == "classification" else [self.columns[1]]
        labels = self.labels(raw, names, self.files["train"])
        strata = labels.numpy() if self.task_type == "classification" else None
        parts = split_parts(len(labels), strata, self.fractions, self.seed)
        split = {
            name: ([texts[i] for i in p], labels[p])
            for name, p in zip(("train", "val", "test"), parts, strict=True)
        }
        for name in ("val", "test"):
            if name in rows:
                t, r = zip(*rows[name], strict=True)
                split[name] = (list(t), self.labels(r, names, self.files[name]))
        return TextSplits(split["train"], split["val"], split["test"], names)

    def labels(self, raw, names: list[str], path: str) -> torch.Tensor:
        """Class indices of ``raw`` by ``names`` (float targets for regression)."""
        if self.task_type == "regression":
            try:
                return torch.tensor([float(v) for v in raw], dtype=torch.float32)
            except ValueError as e:
                raise ConfigError(
                    f"'{path}' has a label that is not a number ({e}); data.task=regression "
                    "needs numeric labels, or set data.task=classification."
                ) from e
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(raw) - set(index))
        if unknown:
            raise ConfigError(
                f"'{path}' has labels the training file lacks ({', '.join(unknown[:5])}); a "
                "model cannot learn them, so add them to the training file or drop those rows."
            )
        return torch.tensor([index[v] for v in raw], dtype=torch.long)


@lru_cache(maxsize=1)
def vader_lexicon() -> tuple[tuple[str, ...], np.ndarray]:
    """(entries, mean ratings) of ``vader_lexicon.txt`` in the vaderSentiment wheel."""
    from importlib import resources

    try:
        path = resources.files("vaderSentiment") / "vader_lexicon.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ConfigError(
            "data=vader_polarity and data=vader_valence read the lexicon in the vaderSentiment "
            "package, which is not installed; run `pip install vaderSentiment`."
        ) from e
    fields = [line.split("\t") for line in lines if line.strip()]
    return tuple(f[0] for f in fields), np.array([float(f[1]) for f in fields])


class VaderLexicon(TextDataModule):
    """The VADER lexicon: each entry's mean human rating as a 3-class polarity
    (``regression=false``: negative <= -band < neutral < band <= positive) or as the number
    itself (``regression=true``). Both tasks share one split, stratified by polarity and fixed
    by the seed.

    Args:
        neutral_band: ratings with absolute value below it count as neutral.
        regression: predict the mean rating (-4 … 4) instead of the polarity.
        val_fraction, test_fraction: held-out shares.
        **kwargs: see :class:`TextDataModule`.
    """

    def __init__(
        self,
        neutral_band: float = 1.0,
        regression: bool = False,
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 < neutral_band < 4:
            raise ConfigError(f"data.neutral_band must be in (0, 4), got {neutral_band}.")
        self.band, self.fractions = neutral_band, (val_fraction, test_fraction)
        self.task_type = "regression" if regression else "classification"

    def load(self) -> TextSplits:
        texts, ratings = vader_lexicon()
        polarity = np.where(ratings <= -self.band, 0, np.where(ratings >= self.band, 2, 1))
        parts = split_parts(len(texts), polarity, self.fractions, self.seed)
        if self.task_type == "regression":
            labels, names = torch.tensor(ratings, dtype=torch.float32), ["valence"]
        else:
            labels, names = torch.tensor(polarity, dtype=torch.long), POLARITY
        train, val, test = (([texts[i] for i in p], labels[p]) for p in parts)
        return TextSplits(train, val, test, names)
