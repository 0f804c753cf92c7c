"""Exit statuses, and the error for a command called the wrong way."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "os_words"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in how the command was called; the message says what to do instead."""


def os_words(exc: OSError, path: object = None) -> str:
    """`cannot write PATH: No space left on device`-style words for an OS error."""
    where = path if path is not None else exc.filename
    cause = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {cause}" if where is not None else cause
