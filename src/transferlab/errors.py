"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

import sys
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
