"""Exceptions with messages meant for the user (printed as one line, no traceback)."""


class EvoError(Exception):
    """Base class for errors evo reports as one line and a non-zero exit code."""

    exit_code = 2


class ConfigError(EvoError):
    """Bad command line, hyperparameter file or run directory."""


class CheckpointError(EvoError):
    """A checkpoint is missing, corrupt or does not match the run."""
