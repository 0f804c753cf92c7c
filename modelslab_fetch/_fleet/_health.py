"""Whether Redis answers: one warning per fault, not one per request, and when to ask again.

While Redis is down, commands skip it at once and only the writer thread's pings probe
it, so a frozen server costs each wait nothing after the first timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .._events import ClientEvent, FleetRestored, FleetUnavailable

__all__ = ["Health"]

logger = logging.getLogger("modelslab_fetch")


class Health:
    """Redis's state as one client sees it; every method may be called from any thread."""

    def __init__(
        self,
        where: str,
        report: Callable[[ClientEvent], None],
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self._where = where
        self._report = report
        self._on_down = on_down
        self._lock = threading.Lock()
        self.up = True
        """Whether the last thing asked of Redis was answered (optimistic at the start)."""
        self._down_since = 0.0
        self.faults = 0
        """How many times Redis went from answering to not (each warned of once)."""

    def __repr__(self) -> str:
        return f"Health({self._where!r}, up={self.up}, faults={self.faults})"

    def failed(self, error: BaseException | str) -> None:
        """Something asked of Redis failed: warn and report once, if it was up."""
        with self._lock:
            if not self.up:
                return
            self.up = False
            self._down_since = time.monotonic()
            self.faults += 1
        reason = error if isinstance(error, str) else _describe(error)
        logger.warning(
            "Redis at %s is unavailable (%s): each client works on its own until it is "
            "back (every wait polls for itself); retrying in the background",
            self._where,
            reason,
        )
        self._report(FleetUnavailable(self._where, reason))
        if self._on_down is not None:
            self._on_down()

    def answered(self) -> None:
        """Redis answered: if it was down, say it is back."""
        if self.up:  # the common case, without the lock
            return
        with self._lock:
            if self.up:
                return
            self.up = True
            down_for = time.monotonic() - self._down_since
        logger.warning("Redis at %s is back after %.1f s", self._where, down_for)
        self._report(FleetRestored(self._where, down_for))


def _describe(error: BaseException) -> str:
    # redis-py's messages name the host and port, never the password; timeouts have none.
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name
