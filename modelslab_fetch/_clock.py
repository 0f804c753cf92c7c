"""The time source behind every wait, replaceable so tests never really sleep."""

from __future__ import annotations

from typing import Protocol

import anyio

__all__ = ["Clock", "EventLoopClock"]


class Clock(Protocol):
    """What polling and retries need of time: a monotonic reading and a way to wait."""

    def now(self) -> float:
        """Seconds on a monotonic scale; only differences matter."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` have passed on this clock."""
        ...


class EventLoopClock:
    """The running event loop's own clock, the one anyio's cancel scopes use."""

    def now(self) -> float:
        """Return the event loop's current time."""
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "EventLoopClock()"
