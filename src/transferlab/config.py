"""The Hydra config tree that ships inside the package, and composing it from code.

``transferlab-train`` and the other commands read :data:`CONF_DIR`, which is part of the
installed package (a wheel carries it too). A user's own config dir joins it on the search path
(``--config-dir DIR`` on the command line, ``config_dirs=[DIR]`` here), so their ``data/`` and
``experiment/`` files are chosen like the built-in ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = str(Path(__file__).resolve().parent / "conf")

# the overrides of a quick CPU check: the 0.4M-parameter test backbone from random weights, no
# console noise (tests, benchmarks and notebooks start from it)
TINY_CPU = (
    "backbone=tiny",
    "backbone.weights=null",
    "print_config=false",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
)

# ${unless:FLAG,VALUE}: VALUE, or null when FLAG is true. train.yaml uses it so that
# backbone.pretrained=true replaces the default stage-1 weights file instead of clashing with it.
OmegaConf.register_new_resolver("unless", lambda flag, value: None if flag else value, replace=True)
# ${run_id:}: 8 random hex digits, drawn once per composed config (cached like Hydra's ${now:}).
# Run dirs are <time to the second>_<run_id>, so two runs started in the same second still get
# dirs of their own.
OmegaConf.register_new_resolver(
    "run_id", lambda: secrets.token_hex(4), use_cache=True, replace=True
)


def compose(
    overrides: Sequence[str] = (),
    config_name: str = "train",
    run_dir: str | Path | None = None,
    root_dir: str | Path | None = None,
    config_dirs: Sequence[str | Path] = (),
    keep_hydra: bool = False,
) -> DictConfig:
    """The config a command would see for ``overrides``, ready to pass to ``train`` or ``build``.

    Args:
        overrides: Hydra overrides, as typed after ``transferlab-train``.
        config_name: ``train`` or ``eval``.
        run_dir: the run dir (``paths.output_dir``); default: the one Hydra would make.
        root_dir: the project root that ``outputs/`` lives under; default: the working dir.
        config_dirs: the user's own config dirs, searched before the built-in tree.
        keep_hydra: keep the ``hydra`` node (launcher and sweep settings); a job never sees it.

    Example:
        >>> cfg = compose(["backbone=tiny", "data=synthetic"], run_dir="/tmp/run")
    """
    searchpath = [f"file://{Path(d).resolve()}" for d in config_dirs]
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(
                config_name, overrides=[*extra, *overrides], return_hydra_config=True
            )
    finally:
        GlobalHydra.instance().clear()
    if run_dir is not None:  # as Hydra sets it for a real run: the job's output dir
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)  # paths.* interpolate Hydra's runtime values
    with open_dict(cfg):
        if root_dir is not None:
            cfg.paths.root_dir = str(root_dir)
        if run_dir is not None:
            cfg.paths.output_dir = str(run_dir)
        if not keep_hydra:
            del cfg["hydra"]  # as in a real run: the job sees it only through HydraConfig
    return cfg
