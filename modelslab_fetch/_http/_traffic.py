"""Client-wide traffic control: a cap on requests in flight, a request rate, a shared 429 pause."""

from __future__ import annotations

import math
from typing import Protocol

import anyio
import sniffio

from .._clock import Clock
from .._closing import refuse_if_stopped
from .._per_loop import ForkAware, leave_behind, running_asyncio_loop

__all__ = ["OutsideTraffic", "TrafficControl"]


class OutsideTraffic(Protocol):
    """Limits shared with other processes (`redis_url=`: the fleet's `FleetLink`)."""

    def pause_left(self) -> float:
        """Seconds until a pause another process announced ends (read from memory)."""

    def publish_pause(self, seconds: float) -> None:
        """Tell the other processes that every request must wait `seconds` from now."""

    async def take_turn(self) -> None:
        """Wait for room in the shared rate budget, and take it."""


class TrafficControl(ForkAware):
    """Admits each HTTP request of one client, so every call on it shares the same limits.

    `async with traffic:` around a request waits for a free slot (at most
    `max_concurrency` requests in flight), then for the end of any pause a 429 imposed on
    the whole client, then for the request's turn under `max_rate` (requests per second).
    """

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_rate: float | None,
        clock: Clock,
        outside: OutsideTraffic | None = None,
    ) -> None:
        # Made by the first request, in the async library that runs it: a limiter made
        # where the client is constructed (trio code making a blocking ModelsLab, whose
        # requests run on its own asyncio loop) would belong to the wrong library.
        self._max_concurrency = max_concurrency
        # A semaphore, not a CapacityLimiter: the limiter's bookkeeping of which task
        # borrowed (two lookups of the running task a request) buys nothing here.
        self._limiter: anyio.Semaphore | None = None
        self._library: str | None = None
        self._interval = 0.0 if max_rate is None else 1.0 / max_rate
        self._next_start = -math.inf
        self._paused_until = -math.inf
        # No rate limit, and no pause since the last look found none: a request then
        # needs no clock reading to be admitted (most clients, most of the time).
        self._free = max_rate is None and outside is None
        self._clock = clock
        # Other processes' pauses and the shared rate budget (redis_url), on top of ours.
        self._outside = outside
        super().__init__()

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished."""
        return 0 if self._limiter is None else self._max_concurrency - self._limiter.value

    def _limiter_here(self) -> anyio.Semaphore:
        asyncio_here = running_asyncio_loop() is not None  # sniffio's answer, cheaper
        library = "asyncio" if asyncio_here else sniffio.current_async_library()
        if self._limiter is None or library != self._library:
            self._limiter = anyio.Semaphore(self._max_concurrency, max_value=self._max_concurrency)
            self._library = library
        return self._limiter

    @property
    def paused(self) -> bool:
        """Whether a pause is holding requests back right now."""
        return self.pause_left > 0

    @property
    def pause_left(self) -> float:
        """Seconds until the current pause ends; 0 when none holds requests back."""
        left = max(self._paused_until - self._clock.now(), 0.0)
        return left if self._outside is None else max(left, self._outside.pause_left())

    def pause(self, seconds: float) -> bool:
        """Hold back every request of the client for `seconds` from now.

        Returns whether this extended the pause; a pause already lasting longer stands,
        so a burst of 429s pauses the client once, not once per request.
        """
        until = self._clock.now() + seconds
        if until <= self._paused_until:
            return False
        self._paused_until = until
        self._free = False
        if self._outside is not None:  # no other process starts a request during it either
            self._outside.publish_pause(seconds)
        return True

    def after_fork(self) -> None:
        """In a forked child: every slot free, the old limiter left alone.

        Slots held by requests the parent had in flight at the fork would never come
        back (those requests are not in the child), and the child would wait for them
        forever; the old limiter holds the parent's tasks.
        """
        leave_behind(self._limiter)
        self._limiter = None
        super().after_fork()

    def can_admit_now(self) -> bool:
        """Whether a request made now is admitted without waiting (see `admit_nowait`)."""
        limiter = self._limiter
        return self._free and (limiter is None or limiter.value > 0)

    def admit_nowait(self) -> bool:
        """Admit a request if it can be at once (a free slot, no pause, no rate to keep).

        False: nothing was taken; `await admit()`. Either way, `release()` once done.
        """
        self.check_fork()
        limiter = self._limiter_here()
        if not self._free:
            return False
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            return False
        try:
            refuse_if_stopped()
        except BaseException:
            limiter.release()
            raise
        return True

    async def admit(self) -> None:
        """Wait for a slot, the end of any pause, and the request's turn; then admit it."""
        if self.admit_nowait():  # the common case needs no trip through the event loop
            return
        limiter = self._limiter_here()
        try:
            limiter.acquire_nowait()  # a slot is free: only a pause or the rate holds it
        except anyio.WouldBlock:
            await limiter.acquire()
        try:
            if not self._free:
                await self._wait_for_turn()
            refuse_if_stopped()
        except BaseException:
            limiter.release()
            raise

    def release(self) -> None:
        """Give back the slot a request was admitted with."""
        assert self._limiter is not None  # noqa: S101 - made by admit
        self._limiter.release()

    async def __aenter__(self) -> None:
        await self.admit()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    async def _wait_for_turn(self) -> None:
        while True:
            # A pause can be extended while we sleep through it: look again after waking.
            while (wait := self.pause_left) > 0:
                await self._clock.sleep(wait)
            if not self._interval:
                # No pause left: until the next one, no need to look (unless other
                # processes can announce one at any moment).
                self._free = self._outside is None
                return
            now = self._clock.now()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
            if start > now:
                await self._clock.sleep(start - now)
            if self._outside is not None:  # and the budget all processes share
                await self._outside.take_turn()
            # A pause that began while this request waited for its turn holds it too:
            # the turn is spent, and a new one is taken after the pause.
            if self.pause_left <= 0:
                return
