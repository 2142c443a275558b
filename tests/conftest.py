"""Shared fixtures: composing the real Hydra config tree and tiny on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from transferlab import CONF_DIR, TINY_CPU, compose

CONF = Path(CONF_DIR)
FAST = list(TINY_CPU)


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) -> the resolved-ready train (or eval) config, its run dir in tmp_path."""

    def _make(overrides=(), config_name="train", fast=True):
        extra = FAST if fast and config_name == "train" else []
        return compose(
            [*extra, *overrides], config_name, run_dir=tmp_path / "run", root_dir=tmp_path
        )

    yield _make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """root/<class>/* with mixed sizes and modes (RGB, L, RGBA, palette), 12 images per class."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P"]
    for c, name in enumerate(["cat", "dog", "owl"]):
        (root / name).mkdir()
        for i in range(12):
            size = (20 + 4 * (i % 3), 24 + 2 * (i % 4))
            arr = (rng.random((size[1], size[0], 3)) * 80 + 60 * c).astype(np.uint8)
            img = Image.fromarray(arr).convert(modes[i % 4])
            img.save(root / name / f"{i}.png")
    return root


def check_refused(cfg, capsys, message: str) -> None:
    """``cfg`` is bad input: exit status 2, one ``error: …`` line holding ``message``, no metrics."""
    from transferlab.errors import run_or_explain
    from transferlab.train import train

    with pytest.raises(SystemExit) as exit_info:
        run_or_explain(train, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not Path(cfg.paths.output_dir, "metrics.json").exists()


def calibrated_eval_config(ckpt, tmp_path):
    """The ``transferlab-eval`` config that scores ``ckpt`` with temperature scaling on CPU."""
    overrides = [f"ckpt_path={ckpt}", "eval.calibrate=temperature", "trainer.accelerator=cpu"]
    overrides.append("trainer.enable_progress_bar=false")
    return compose(overrides, "eval", run_dir=tmp_path / "eval", root_dir=tmp_path)


TEXT_WORDS = "good great happy love nice bad awful sad hate ugly okay plain the a movie day".split()


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 16) and its word-level tokenizer, saved with
    save_pretrained, for ``backbone=hf backbone.name=<this dir>``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("tiny_bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *TEXT_WORDS,
        *"abcdefghijklmnopqrstuvwxyz",
    ]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(root)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def text_csv(tmp_path_factory) -> Path:
    """train.csv / val.csv / test.csv of short texts labelled pos / neg (learnable by word)."""
    root = tmp_path_factory.mktemp("texts")
    rng = np.random.default_rng(0)
    pos, neg = TEXT_WORDS[:5], TEXT_WORDS[5:10]
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        rows = ["text,label"]
        for i in range(n):
            words, label = (pos, "pos") if i % 2 else (neg, "neg")
            text = " ".join(rng.choice(words, size=1 + i % 3)) + " movie"
            rows.append(f"{text},{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def text_overrides(model: Path, data: str = "vader_polarity") -> list[str]:
    """Overrides that put the tiny text model on text data (a small training subset)."""
    extra = ["data.train_size=64"] if data.startswith("vader") else []
    return ["backbone=hf", f"backbone.name={model}", f"data={data}", "data.batch_size=8", *extra]
