"""Exceptions with messages meant for the user (printed as one line, no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class EvoError(Exception):
    """Base class for errors evo reports as one line and a non-zero exit code."""

    exit_code = 2


class ConfigError(EvoError):
    """Bad command line, hyperparameter file or run directory."""


class CheckpointError(EvoError):
    """A checkpoint is missing, corrupt or does not match the run."""


def mark_everywhere(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised identically on every rank (so each can exit cleanly, no abort)."""
    exc.evo_everywhere = True  # type: ignore[attr-defined]
    return exc


@contextmanager
def everywhere() -> Iterator[None]:
    """Errors raised inside depend only on argv and data every rank holds: every rank raises them."""
    try:
        yield
    except EvoError as exc:
        raise mark_everywhere(exc) from None
