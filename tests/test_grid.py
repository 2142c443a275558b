"""Every strategy x scheduler x data choice runs a fast_dev_run step with the tiny backbone.

The fast suite runs every choice of each group once (the others at their defaults); the pairs
(strategy x scheduler, strategy x data) are ``smoke`` tests and the full three-way product is
``slow``, both under `make test-slow`. That every choice binds to its constructor is checked
statically for every group in test_targets.py. Text data and text-only strategies (prompt tuning)
run on a tiny random BERT given as ``backbone=hf``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import CONF, text_overrides
from transferlab.train import train

STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
# source/target pairs run once each in test_domain.py; with every strategy in the full grid
PAIRS = {p.stem for p in (CONF / "data").glob("*.yaml") if "\nsource:" in p.read_text()}
TEXT_DATA = {p.stem for p in (CONF / "data").glob("*.yaml") if "max_length:" in p.read_text()}
TEXT_ONLY = {"prompt_tuning"}  # strategies that need a text encoder


@pytest.fixture
def text(tiny_text_model, text_csv):
    return tiny_text_model, text_csv


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory):
    """A tiny MNIST in torchvision's raw idx format, so data=torchvision runs offline."""
    root = tmp_path_factory.mktemp("tv")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">ii", 2049, n) + labels.tobytes()
        )
    return root


def data_overrides(data, image_folder, fake_mnist_root, text=None):
    if data in TEXT_DATA:
        model, csv_dir = text
        extra = [f"data.train={csv_dir / 'train.csv'}"] if data == "text_file" else []
        return [*text_overrides(model, data), *extra]
    extra = {
        "image_folder": [f"data.root={image_folder}", "data.image_size=32", "data.num_workers=0"],
        "torchvision": ["data.name=MNIST", f"data.root={fake_mnist_root}", "data.num_workers=0"],
        "folder_pair": [f"data.source.root={image_folder}", f"data.target.root={image_folder}"],
    }
    return [f"data={data}", "data.batch_size=8", *extra.get(data, [])]


def check_combination(make_cfg, overrides):
    """A fast_dev_run writes metrics.json equal to the returned metrics, with sane values."""
    cfg = make_cfg(["+trainer.fast_dev_run=true", *overrides])
    metrics = train(cfg)
    written = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    assert written == metrics
    if "test/mae" in metrics:  # a regression target
        assert metrics["test/mae"] >= 0.0 and -1.0 <= metrics["test/spearman"] <= 1.0
    else:
        assert 0.0 <= metrics["test/acc"] <= 1.0
    assert 0 < metrics["params/trainable"] <= metrics["params/total"]


ONE_PER_CHOICE = [("strategy", c) for c in STRATEGIES] + [("scheduler", c) for c in SCHEDULERS]
ONE_PER_CHOICE += [("data", c) for c in DATA if c not in PAIRS]


@pytest.mark.parametrize(
    ("group", "choice"), ONE_PER_CHOICE, ids=[f"{g}={c}" for g, c in ONE_PER_CHOICE]
)
def test_every_choice_runs(make_cfg, image_folder, fake_mnist_root, text, group, choice):
    if group == "data":
        overrides = data_overrides(choice, image_folder, fake_mnist_root, text)
    elif choice in TEXT_ONLY:
        overrides = [f"{group}={choice}", *data_overrides("vader_polarity", None, None, text)]
    else:
        overrides = [f"{group}={choice}", "data=synthetic"]
    check_combination(make_cfg, overrides)


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_regression_losses_run_on_a_text_target(make_cfg, text, loss):
    overrides = [*data_overrides("vader_valence", None, None, text), f"loss={loss}"]
    check_combination(make_cfg, overrides)


@pytest.mark.smoke
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_x_scheduler(make_cfg, text, strategy, scheduler):
    data = ["data=synthetic"]
    if strategy in TEXT_ONLY:
        data = data_overrides("vader_polarity", None, None, text)
    check_combination(make_cfg, [f"strategy={strategy}", f"scheduler={scheduler}", *data])


@pytest.mark.smoke
@pytest.mark.parametrize("data", [d for d in DATA if d not in PAIRS])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_x_data(make_cfg, image_folder, fake_mnist_root, text, strategy, data):
    if strategy in TEXT_ONLY and data not in TEXT_DATA:
        pytest.skip("refused at config time (test_text.py checks the sentence)")
    overrides = data_overrides(data, image_folder, fake_mnist_root, text)
    check_combination(make_cfg, [f"strategy={strategy}", *overrides])


@pytest.mark.slow
@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_full_grid(make_cfg, image_folder, fake_mnist_root, text, strategy, scheduler, data):
    if strategy in TEXT_ONLY and data not in TEXT_DATA:
        pytest.skip("refused at config time (test_text.py checks the sentence)")
    overrides = data_overrides(data, image_folder, fake_mnist_root, text)
    check_combination(make_cfg, [f"strategy={strategy}", f"scheduler={scheduler}", *overrides])
