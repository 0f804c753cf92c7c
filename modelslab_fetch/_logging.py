"""The SDK's logging: `MODELSLAB_LOG`, the API key kept out of every record, warnings said once.

httpcore and httpx log responses' status lines and headers: a server echoing the request
body there would leak the key, so a filter redacts every live client's key from each record.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref

from ._redaction import Redactor
from ._server_json import well_formed

__all__ = [
    "LOGGER_NAMES",
    "LOG_ENV",
    "KeyRedactingFilter",
    "install_key_filter",
    "log_once",
    "redact_from_logs",
    "setup_logging_from_env",
]

LOG_ENV = "MODELSLAB_LOG"

LOGGER_NAMES = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "modelslab_fetch",
)
"""Every logger that may see a response, each named: filters see no child's records."""

logger = logging.getLogger("modelslab_fetch")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
_ONCE_LIMIT = 64

# Held weakly: a client that is gone takes its redactor with it.
_live: weakref.WeakSet[Redactor] = weakref.WeakSet()
# What log_once said, per message: bounded against a server inventing values endlessly.
_said: dict[str, set[str]] = {}


def setup_logging_from_env() -> logging.Handler | None:
    """Send the SDK's log to stderr at the level `MODELSLAB_LOG` names; None if unset.

    Idempotent; an unknown level is reported on stderr and ignored.
    """
    wanted = os.environ.get(LOG_ENV, "").strip().lower()
    if not wanted:
        return None
    level = _LEVELS.get(wanted)
    if level is None:
        sys.stderr.write(
            f"modelslab-fetch: {LOG_ENV}={wanted!r} is not a level; use debug or info\n"
        )
        return None
    install_key_filter()
    names = ["modelslab_fetch"] + (["httpx"] if level == logging.DEBUG else [])
    handler: logging.Handler | None = None
    for name in names:
        named = logging.getLogger(name)
        named.setLevel(level)
        existing = [h for h in named.handlers if getattr(h, "_modelslab_env", False)]
        if existing:
            handler = existing[0]
            continue
        handler = logging.StreamHandler(sys.stderr)
        # Its own level too: the command's live view turns the logger down to DEBUG to
        # count polls, and MODELSLAB_LOG=info must still mean info.
        handler.setLevel(level)
        handler._modelslab_env = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(_FORMAT))
        named.addHandler(handler)
    return handler


def log_once(level: int, message: str, key: str, *args: object) -> None:
    """Log `message % args` the first time `key` comes up, for at most 64 keys a message."""
    said = _said.setdefault(message, set())
    if key in said or len(said) >= _ONCE_LIMIT:
        return
    said.add(key)
    logger.log(level, message, *args)


class KeyRedactingFilter(logging.Filter):
    """Rewrites a log record so that no live client's API key appears in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        redactors = list(_live)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it, we change nothing
            return True
        redacted = well_formed(message)
        for redactor in redactors:
            redacted = redactor.text(redacted)
        if redacted != message:
            # Formatted once here, so neither msg nor args hold the key any more.
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when set: fill it here, to redact it.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = well_formed(record.exc_text)
            for redactor in redactors:
                record.exc_text = redactor.text(record.exc_text)
        return True


_FILTER = KeyRedactingFilter()


def redact_from_logs(redactor: Redactor) -> None:
    """Have every record redact `redactor`'s key too, for as long as `redactor` lives."""
    _live.add(redactor)
    install_key_filter()


def install_key_filter() -> None:
    """Add the filter to each logger in `LOGGER_NAMES`, once (calling it again is a no-op)."""
    for name in LOGGER_NAMES:
        named = logging.getLogger(name)
        if not any(isinstance(existing, KeyRedactingFilter) for existing in named.filters):
            named.addFilter(_FILTER)
