"""Every ``_target_`` of every choice in every config group binds to its constructor: each key
is an argument it accepts, and each argument it requires is given (or passed by the build
layer at run time). A typo in a YAML key fails here, without training anything."""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from conftest import CONF

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# arguments the build layer passes when it instantiates a node of this group
AT_RUN_TIME = {
    "data": {"augmentation"},
    "backbone": {"in_chans"},
    "head": {"in_features", "num_classes"},
    "trainer": {"callbacks", "logger"},
}
GROUPS = ["backbone", "data", "head", "strategy", "optimizer", "scheduler", "augmentation"]
GROUPS += ["domain_adaptation", "regularization", "callbacks", "logger", "trainer"]
CHOICES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def target_nodes(node, path: str):
    """(dotted path, node) of every mapping with a ``_target_`` under ``node``."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from target_nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{path}[{i}]")


def binding_problems(node: dict, runtime: set[str]) -> list[str]:
    """What stops ``node`` from binding to its target's signature (empty: nothing)."""
    target = get_object(node["_target_"])
    signature = inspect.signature(target)
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    keys = set(node) - HYDRA_KEYS
    problems = [f"unknown key '{k}'" for k in sorted(keys) if k not in params and not takes_any]
    if not node.get("_partial_"):  # a partial gets its remaining arguments later
        required = {
            n
            for n, p in params.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        problems += [f"missing argument '{n}'" for n in sorted(required - keys - runtime)]
    return problems


def test_binding_check_catches_a_typo_and_a_missing_argument():
    typo = {"_target_": "transferlab.heads.create_head", "in_features": 4, "num_clases": 2}
    assert binding_problems(typo, set()) == [
        "unknown key 'num_clases'",
        "missing argument 'num_classes'",
    ]
    assert binding_problems({**typo, "_partial_": True}, set()) == ["unknown key 'num_clases'"]


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_target_binds_to_its_constructor(make_cfg, group, choice):
    overrides = [f"{group}={choice}"]
    cfg = make_cfg(overrides)
    node = OmegaConf.to_container(cfg[group], resolve=False)
    found = list(target_nodes(node, group))
    assert found or group in ("domain_adaptation", "regularization", "logger", "callbacks")
    for path, target in found:
        runtime = AT_RUN_TIME.get(group, set()) if path == group else set()
        assert binding_problems(target, runtime) == [], path
