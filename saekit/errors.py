"""User-facing errors: one clear sentence naming what was wrong and what was expected."""


class SaekitError(Exception):
    """A user error (bad config, missing file, bad input). The CLI prints it as one line, exit 2."""


class ConfigError(SaekitError, ValueError):
    """A config field has a value outside what it accepts."""


class DataError(SaekitError):
    """Input data (a file, a dataset, a batch) is missing, empty, corrupt or malformed."""
