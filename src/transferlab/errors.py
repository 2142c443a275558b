"""The one exception type for mistakes a user can fix."""


class ConfigError(ValueError):
    """A bad setting or input; the message is one sentence that names the fix.

    Entry points print the message alone (no traceback) and exit with status 2.
    """
