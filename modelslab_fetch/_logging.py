"""`MODELSLAB_LOG=debug|info`: the SDK's logging on stderr, with no code (as `OPENAI_LOG`).

Read once, when the package is imported. `info` shows retries, rate-limit pauses and
polls given up on; `debug` adds every request's status and each poll's schedule, and
httpx's own lines. The key never shows: every record passes the key-redacting filter
(`_log_redaction`) before any handler sees it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from ._log_redaction import install as install_log_redaction

__all__ = ["LOG_ENV", "setup_logging_from_env"]

LOG_ENV = "MODELSLAB_LOG"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"


def setup_logging_from_env(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Send the SDK's log to stderr at the level `MODELSLAB_LOG` names; None if unset.

    Idempotent: a second call does not add a second handler. An unknown level is
    reported once on stderr and ignored, rather than failing an import.
    """
    env = os.environ if environ is None else environ
    wanted = env.get(LOG_ENV, "").strip().lower()
    if not wanted:
        return None
    level = _LEVELS.get(wanted)
    if level is None:
        sys.stderr.write(
            f"modelslab-fetch: {LOG_ENV}={wanted!r} is not a level; use debug or info\n"
        )
        return None
    install_log_redaction()
    names = ["modelslab_fetch"] + (["httpx"] if level == logging.DEBUG else [])
    handler: logging.Handler | None = None
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        existing = [h for h in logger.handlers if getattr(h, "_modelslab_env", False)]
        if existing:
            handler = existing[0]
            continue
        handler = logging.StreamHandler(sys.stderr)
        # Its own level too: the command's live view turns the logger down to DEBUG to
        # count polls, and MODELSLAB_LOG=info must still mean info.
        handler.setLevel(level)
        handler._modelslab_env = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return handler
