"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NoReturn

from omegaconf.errors import MissingMandatoryValue


class ConfigError(ValueError):
    """A bad setting or input; the message is one sentence that names the fix.

    Entry points print the message alone (no traceback) and exit with status 2.
    """


def config_error_in(error: BaseException | None) -> ConfigError | None:
    """The user's mistake behind ``error``, looking through Hydra's instantiation wrappers.

    A config value left at ``???`` (such as ``data.root`` of ``data=image_folder``) counts too.
    """
    while error is not None:
        if isinstance(error, ConfigError):
            return error
        if isinstance(error, MissingMandatoryValue):
            key = error.full_key
            return ConfigError(f"{key} is not set; add {key}=<value> to the command.")
        error = error.__cause__ or error.__context__
    return None


def exit_refused(error: ConfigError) -> NoReturn:
    """Refuse a run as every entry point does: the sentence on stderr, exit status 2."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


def run_or_explain(fn, *args):
    """Run ``fn(*args)``; a :class:`ConfigError` becomes one line on stderr and exit status 2.

    The run dir of a refused run is removed when it holds only what Hydra wrote for it; a run
    dir that already holds outputs (the error came mid-run, e.g. divergence) is kept and marked
    failed with ``failure.json``.
    """
    try:
        return fn(*args)
    except Exception as e:
        cause = config_error_in(e)
        if cause is None:
            raise
        settle_refused_run_dir(cause)
        exit_refused(cause)


def settle_refused_run_dir(error: ConfigError) -> None:
    """Remove the refused run's dir if it holds only Hydra's ``.hydra/`` and log, else mark it
    failed with ``failure.json``."""
    from hydra.core.hydra_config import HydraConfig

    from transferlab.files import write_json

    if not HydraConfig.initialized():
        return
    out = HydraConfig.get().runtime.get("output_dir")
    if not out or not Path(out).is_dir():
        return
    entries = list(Path(out).iterdir())
    if all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
        shutil.rmtree(out)
        return
    overrides = [str(o) for o in HydraConfig.get().overrides.task]
    record = {"error": "ConfigError", "message": str(error), "overrides": overrides}
    write_json(Path(out) / "failure.json", {**record, "traceback": ""})
