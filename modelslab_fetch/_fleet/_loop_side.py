"""The fleet's commands on one event loop: leases, lookups and the rate budget.

The lease is Lua rather than redis-py's `Lock`: the poller must store the result, publish
it and give the lease up in one atomic step, so no other worker fetches the job again.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, Literal

from ._settings import FleetSettings

if TYPE_CHECKING:
    from limits import RateLimitItem

__all__ = ["MAX_CONNECTIONS", "LoopSide", "rate_item"]

MAX_CONNECTIONS = 32
"""Connections to Redis per event loop: commands take well under a millisecond."""

# KEYS: the result, the lease. ARGV: our token, the lease's time to live (ms).
# Returns {2, record} if the job's result is known, {1, ""} if the lease is ours (taken
# or renewed), {0, ms} if another worker holds it for ms more.
_DECIDE = """
local done = redis.call('GET', KEYS[1])
if done then return {2, done} end
local holder = redis.call('GET', KEYS[2])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {1, ''}
end
return {0, tostring(redis.call('PTTL', KEYS[2]))}
"""
# KEYS: the lease. ARGV: our token, the new time to live (ms). 1 if renewed, 0 if lost.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: the result, the lease. ARGV: the record, its time to live (ms), our token, the
# channel. Stores and publishes the record, then gives the lease up if it is ours.
_FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS: the lease. ARGV: our token. Gives the lease up if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Decision = (
    tuple[Literal["done"], str] | tuple[Literal["mine"], None] | tuple[Literal["theirs"], float]
)


class LoopSide:
    """The connections and scripts of one event loop."""

    def __init__(self, settings: FleetSettings, *, max_rate: float | None) -> None:
        import redis.asyncio  # noqa: PLC0415 - only a client with redis_url loads it
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        timeout = settings.timeout
        # One retry, at once: a connection broken by a Redis restart is replaced.
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = redis.asyncio.Redis(connection_pool=self._pool)
        self._decide = self.redis.register_script(_DECIDE)
        self._extend = self.redis.register_script(_EXTEND)
        self._finish = self.redis.register_script(_FINISH)
        self._release = self.redis.register_script(_RELEASE)
        self._limiter: Any = None
        self._item: RateLimitItem | None = None
        if max_rate is not None:
            from limits.aio.storage import RedisStorage  # noqa: PLC0415
            from limits.aio.strategies import MovingWindowRateLimiter  # noqa: PLC0415

            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=settings.prefix + "rate",
                connection_pool=self._pool,  # type: ignore[arg-type]  # documented option
            )
            self._limiter = MovingWindowRateLimiter(storage)
            self._item = rate_item(max_rate)

    def __repr__(self) -> str:
        return f"LoopSide(rate={self._item})"

    async def aclose(self) -> None:
        """Close this loop's connections."""
        await self.redis.aclose()
        await self._pool.aclose()

    async def decide(self, result_key: str, lease_key: str, token: str, ttl: float) -> Decision:
        """Whether the job is known finished, or who polls it: this worker or another."""
        code, value = await self._decide(keys=[result_key, lease_key], args=[token, _ms(ttl)])
        if code == 2:
            return ("done", value.decode() if isinstance(value, bytes) else str(value))
        if code == 1:
            return ("mine", None)
        return ("theirs", max(int(value), 0) / 1000)

    async def extend(self, lease_key: str, token: str, ttl: float) -> bool:
        """Keep the lease `ttl` seconds more; False if another worker holds it now."""
        return bool(await self._extend(keys=[lease_key], args=[token, _ms(ttl)]))

    async def finish(
        self, result_key: str, lease_key: str, token: str, *, record: str, kept: float, channel: str
    ) -> None:
        """Keep and publish a finished job's record, and give the lease up, in one step."""
        await self._finish(keys=[result_key, lease_key], args=[record, _ms(kept), token, channel])

    async def release(self, lease_key: str, token: str) -> None:
        """Give the lease up, if it is still this worker's."""
        await self._release(keys=[lease_key], args=[token])

    async def get_many(self, keys: list[str]) -> list[bytes | str | None]:
        """The values of `keys` (None for a missing one), in one round trip."""
        return list(await self.redis.mget(keys))

    async def try_turn(self) -> float:
        """Take one request from the fleet's rate budget: 0, or the seconds to wait first."""
        limiter, item = self._limiter, self._item
        if limiter is None or item is None or await limiter.hit(item, "fleet"):
            return 0.0
        stats = await limiter.get_window_stats(item, "fleet")
        # Jittered: workers waiting for the same slot do not all ask in one millisecond.
        wait: float = max(stats.reset_time - time.time(), 0.001)
        return wait + random.uniform(0, 0.01)  # noqa: S311


def rate_item(rate: float) -> RateLimitItem:
    """`rate` a second as N per W seconds, W ≤ 10 the smallest making N whole (2.5/s: 5 per 2 s)."""
    from limits import RateLimitItemPerSecond  # noqa: PLC0415

    def error(window: int) -> float:
        amount = rate * window
        return abs(amount - round(amount)) / amount

    window = min(range(1, 11), key=lambda w: (round(error(w), 3), w))
    return RateLimitItemPerSecond(max(1, round(rate * window)), window)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
