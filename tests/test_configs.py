"""Every config file loads, every choice of every group composes, and each opens with a command."""

from __future__ import annotations

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import CONF

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
CHOICES = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def test_expected_groups_exist():
    for group in (
        "backbone",
        "strategy",
        "augmentation",
        "scheduler",
        "domain_adaptation",
        "data",
        "head",
        "optimizer",
        "trainer",
        "logger",
        "callbacks",
        "paths",
        "experiment",
    ):
        assert group in GROUPS, group


@pytest.mark.parametrize(
    "path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF))
)
def test_yaml_parses_and_starts_with_a_comment(path):
    text = path.read_text()
    yaml.safe_load(text)
    assert text.startswith("#"), f"{path} should open with a comment saying what it is"


# groups of the rank and advise configs, not of train
RANK_GROUPS = {"candidate_set"}


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_choice_composes(make_cfg, group, choice):
    overrides = [f"{group}={choice}"]
    if group == "data" and choice == "image_folder":
        overrides.append("data.root=/tmp")
    if group == "data" and choice == "text_file":
        overrides.append("data.train=/tmp/train.csv")
    if group in RANK_GROUPS:
        for config_name in ("rank", "advise"):
            cfg = make_cfg(overrides, config_name=config_name)
            assert cfg.candidates and all(c.overrides for c in cfg.candidates)
        return
    cfg = make_cfg(overrides)
    assert HydraConfig.get().runtime.choices[group] == choice
    # interpolations resolve (no missing values besides those a user must give)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_eval_config_composes(make_cfg):
    cfg = make_cfg(["ckpt_path=x.ckpt", "data=digits"], config_name="eval")
    assert cfg.data._target_.endswith("Digits")
    assert cfg.ckpt_path == "x.ckpt"


def test_hub_weights_replace_the_default_stage1_file(make_cfg):
    default = make_cfg(["backbone=resnet18"], fast=False)
    assert default.backbone.weights.endswith("outputs/pretrained/mnist_source_resnet18.safetensors")
    hub = make_cfg(["backbone=resnet18", "backbone.pretrained=true"], fast=False)
    assert hub.backbone.weights is None
    both = make_cfg(["backbone.pretrained=true", "backbone.weights=/w.safetensors"], fast=False)
    assert both.backbone.weights == "/w.safetensors"  # a file the user names still clashes
