"""The time source behind every wait, replaceable so tests never really sleep."""

from __future__ import annotations

from typing import Protocol

import anyio

from ._per_loop import running_asyncio_loop

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
        # asyncio's own reading where it runs: anyio's asks sniffio which library runs
        # first, a third of the cost of a wait's first poll's bookkeeping.
        loop = running_asyncio_loop()
        return anyio.current_time() if loop is None else loop.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "EventLoopClock()"
