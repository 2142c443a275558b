"""Documented commands cannot rot: every ``transferlab-train`` / ``transferlab-eval`` (and the
other Hydra commands) shown in README.md, the experiments pages, benchmarks/README.md and the
config files' header comments is composed as Hydra would run it, sweeps included, with its run
and sweep dirs resolved. A command that could not start fails here."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from transferlab import CONF_DIR, compose

ROOT = Path(__file__).resolve().parents[1]
# console script -> the config it composes
CONFIG_OF = {
    "transferlab-train": "train",
    "python -m transferlab.train": "train",
    "transferlab-eval": "eval",
    "python -m transferlab.evaluate": "eval",
    "transferlab-augment-preview": "train",
    "transferlab-export": "export",
    "transferlab-predict": "predict",
    "transferlab-rank": "rank",
    "transferlab-advise": "advise",
}
# commands whose own keys go to their config and every other override to a train config
OWN_KEYS = {"rank": "transferlab.rank:RANK_KEYS", "advise": "transferlab.advise:ADVISE_KEYS"}
COMMAND = re.compile(
    r"(transferlab-(?:train|eval|augment-preview|export|predict)|python -m transferlab\.(?:train|evaluate))\b([^`\n]*)"
)


def documents() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    pages += sorted((ROOT / "experiments").rglob("*.md"))
    return pages + sorted(Path(CONF_DIR).rglob("*.yaml"))


def command_lines(path: Path) -> list[str]:
    """Each command in ``path`` as one string (a YAML file: its comment lines only)."""
    text = path.read_text()
    if path.suffix == ".yaml":
        text = "\n".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    text = text.replace("\\\n", " ")  # shell line continuations
    found = []
    for match in COMMAND.finditer(text):
        rest = match.group(2).split(" #", 1)[0].split("  (", 1)[0]
        found.append(f"{match.group(1)} {rest.strip()}".strip())
    return found


def parse(line: str) -> tuple[str, list[str], bool] | None:
    """(config name, overrides, multirun), or None for a template such as ``[overrides]``."""
    name = next(c for c in sorted(CONFIG_OF, key=len, reverse=True) if line.startswith(c))
    line = re.sub(r"\s*\[[^\]]*\]", "", line)  # [optional parts] are left out
    try:
        tokens = shlex.split(line[len(name) :])
    except ValueError:
        return None
    multirun = "-m" in tokens or "--multirun" in tokens
    tokens = [t for t in tokens if t not in ("-m", "--multirun")]
    if "--config-dir" in tokens:  # a user's own dir; tests/test_packaging.py runs that case
        return None
    if name == "transferlab-augment-preview":  # argparse flags (with values) beside the overrides
        tokens = without_flags(tokens)
    if not tokens and CONFIG_OF[name] not in ("train", "rank", "advise"):
        return None
    # a placeholder the reader fills in (<run>, …) stands for any plain name
    tokens = [re.sub(r"<[^<>]*>|…|\.\.\.", "x", t) for t in tokens]
    if any("=" not in t for t in tokens):
        return None  # a pattern, not a command
    return CONFIG_OF[name], tokens, multirun


def without_flags(tokens: list[str]) -> list[str]:
    """``tokens`` minus ``--flag value`` pairs and ``--flag=value`` items."""
    kept, skip = [], False
    for t in tokens:
        if skip or t.startswith("--"):
            skip = not skip and t.startswith("--") and "=" not in t
            continue
        kept.append(t)
    return kept


def runs_of(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep, each swept value once (the other keys at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [
        (i, list(o.sweep_string_iterator())) for i, o in enumerate(parsed) if o.is_sweep_override()
    ]
    plain = [o.input_line if not o.is_sweep_override() else None for o in parsed]

    def job(choice: dict[int, str]) -> list[str]:
        out = []
        for i, o in enumerate(parsed):
            if plain[i] is not None:
                out.append(plain[i])
            else:
                out.append(f"{o.get_key_element()}={choice.get(i, dict(sweeps)[i][0])}")
        return out

    jobs = [job({})]
    for i, values in sweeps:
        jobs += [job({i: v}) for v in values[1:]]
    return jobs


CASES = sorted({(str(p.relative_to(ROOT)), line) for p in documents() for line in command_lines(p)})


def test_the_collector_finds_the_readme_commands():
    lines = command_lines(ROOT / "README.md")
    assert "transferlab-train strategy=feature_extraction" in lines
    assert parse("transferlab-train -m strategy=a,b seed=0,1") == (
        "train",
        ["strategy=a,b", "seed=0,1"],
        True,
    )
    assert parse("transferlab-train <overrides>") is None
    assert parse("transferlab-eval ckpt_path=<run>/best.ckpt [data=digits]") == (
        "eval",
        ["ckpt_path=x/best.ckpt"],
        False,
    )
    assert runs_of(["strategy=a,b", "seed=0,1,2"]) == [
        ["strategy=a", "seed=0"],
        ["strategy=b", "seed=0"],
        ["strategy=a", "seed=1"],
        ["strategy=a", "seed=2"],
    ]


@pytest.mark.parametrize(("where", "line"), CASES, ids=[f"{w}: {c}" for w, c in CASES])
def test_documented_command_composes(where, line):
    parsed = parse(line)
    if parsed is None:
        pytest.skip("a pattern, not a runnable command")
    config_name, overrides, multirun = parsed
    if not (Path(CONF_DIR) / f"{config_name}.yaml").is_file():
        pytest.fail(f"{where} documents `{line}`, but there is no {config_name}.yaml")
    if config_name in OWN_KEYS:
        module, name = OWN_KEYS[config_name].split(":")
        keys = getattr(importlib.import_module(module), name)
        own = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in keys]
        compose(own, config_name)
        overrides = [o for o in overrides if o not in own]
        config_name = "train"
    for job in runs_of(overrides):
        cfg = compose(job, config_name, keep_hydra=True)  # paths.* as a real run resolves them
        if multirun or cfg.hydra.mode == RunMode.MULTIRUN:
            # sweepers (Optuna's) resolve the sweep dir before any job runtime exists
            HydraConfig.instance().cfg = None
            assert OmegaConf.select(cfg, "hydra.sweep.dir", throw_on_resolution_failure=True)
            HydraConfig.instance().set_config(cfg)
        assert OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=True)
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.to_container(cfg, resolve=True)
