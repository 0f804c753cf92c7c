"""Keeping the API key out of httpx's and httpcore's DEBUG logs, and out of our own.

httpcore logs every response's status line and headers at DEBUG (`receive_response_headers
.complete return_value=(b'HTTP/1.1', 400, b'<reason>', [(b'X-Echo', b'<value>')])`) and
httpx logs the reason phrase at INFO: a server echoing the request body there would put
the key in your logs. A filter on those loggers redacts every live client's key from each
record before any handler sees it. The same filter makes every record writable: lone
surrogates a server sent (half an emoji) become U+FFFD, which any handler can encode.
"""

from __future__ import annotations

import logging
import weakref

from ._redaction import Redactor
from ._text import well_formed

__all__ = ["KeyRedactingFilter", "install", "register"]

LOGGER_NAMES = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "modelslab_fetch",
)
"""Every logger that may see a response: a logger's filters see only the records logged
on that very logger (not its children's), so each is named, not just `httpcore`."""

# Held weakly: a client that is gone takes its redactor with it; several clients with
# different keys each add theirs.
_live: weakref.WeakSet[Redactor] = weakref.WeakSet()


class KeyRedactingFilter(logging.Filter):
    """Rewrites a log record so that no live client's API key appears in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        redactors = list(_live)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it, we change nothing
            return True
        # Server text may hold lone surrogates (half an emoji): no UTF-8 handler could
        # write the record, so they become U+FFFD here, before any handler sees it.
        redacted = well_formed(message)
        for redactor in redactors:
            redacted = redactor.text(redacted)
        if redacted != message:
            # Formatted once here, so neither msg nor args hold the key any more.
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters cache the traceback text in exc_text: filling it here means the
            # redacted text is what every handler prints.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = well_formed(record.exc_text)
            for redactor in redactors:
                record.exc_text = redactor.text(record.exc_text)
        return True


_FILTER = KeyRedactingFilter()


def register(redactor: Redactor) -> None:
    """Have the filter redact `redactor`'s key too, for as long as `redactor` lives."""
    _live.add(redactor)


def install() -> None:
    """Add the filter to each logger in `LOGGER_NAMES`, once (calling it again is a no-op)."""
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, KeyRedactingFilter) for existing in logger.filters):
            logger.addFilter(_FILTER)
