"""Shared fixtures: composing the real Hydra config tree and tiny on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

import transferlab  # noqa: F401  (registers the config resolvers, as every command does)

CONF = Path(__file__).resolve().parents[1] / "conf"
FAST = [
    "backbone=tiny",
    "backbone.weights=null",
    "print_config=false",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) -> the resolved-ready train (or eval) config, its run dir in tmp_path."""

    def _make(overrides=(), config_name="train", fast=True):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            extra = FAST if fast and config_name == "train" else []
            cfg = compose(config_name, overrides=[*extra, *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            del cfg["hydra"]  # as in a real run: the job sees it only through HydraConfig
        return cfg

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
    from transferlab.train import run_or_explain, train

    with pytest.raises(SystemExit) as exit_info:
        run_or_explain(train, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not Path(cfg.paths.output_dir, "metrics.json").exists()
