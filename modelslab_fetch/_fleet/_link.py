"""One client's link to the fleet's Redis: what it hears, what it says, what it asks.

A listener thread hears deliveries, results and pauses from other workers (resubscribing
and catching up after a fault); a writer thread publishes what plain functions on any
thread hand it and pings Redis when idle; commands on each event loop take leases, the
rate budget and lookups. Nothing here is needed for a result: when Redis fails, callers
get None and go on alone. Only records the redaction already cleaned reach Redis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import sniffio

from .._errors import ConfigurationError
from .._events import ClientEvent, EventSink
from .._per_loop import ForkAware, PerLoop
from ._health import Health
from ._settings import FleetSettings

if TYPE_CHECKING:
    import redis

    from ._loop_side import LoopSide

__all__ = ["KEPT_SECONDS", "FleetLink", "Heard"]

logger = logging.getLogger("modelslab_fetch")

T = TypeVar("T")

KEPT_SECONDS = 300.0
"""How long Redis keeps a delivery or a shared result, for waits that start after it came."""
MAX_OUTBOX = 10_000
"""The most records waiting to be published while Redis is down; the oldest go first."""
IDLE_PING = 0.5
"""Seconds between pings while nothing is published: how soon a frozen Redis is noticed."""
DOWN_PING = (0.1, 1.0)
"""The first and the longest gap between pings while Redis is down: back within a second."""
LISTEN_SLICE = 0.25
"""How long the listener blocks for a message before looking at its stop flag."""


class Heard:
    """What this client does with what the fleet publishes; callbacks run on the listener."""

    def __init__(self) -> None:
        self.delivery: Callable[[str, dict[str, Any]], None] | None = None
        """`(track_id, body)`: a webhook delivery another worker accepted."""
        self.result: Callable[[str, str, dict[str, Any]], None] | None = None
        """`(scope, request_id, body)`: a finished job another worker fetched."""
        self.watched: Callable[[], list[tuple[str, str]]] | None = None
        """The `(scope, request_id)` pairs waited on now: looked up after a (re)connection."""
        self.down: Callable[[], None] | None = None
        """Redis stopped answering: waits that follow another worker's polls must poll now."""

    def __repr__(self) -> str:
        return f"Heard(delivery={self.delivery is not None}, result={self.result is not None})"


class FleetLink(ForkAware):
    """A client's link to Redis; shared by its `with_options` twins and its blocking twin."""

    def __init__(
        self,
        settings: FleetSettings,
        *,
        events: EventSink | None = None,
        max_rate: float | None = None,
    ) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.channel = settings.prefix + "events"
        self.max_rate = max_rate
        self.heard = Heard()
        self._events = events
        self.health = Health(settings.where, self._report, on_down=self._down)
        self._caller: Callable[[Callable[[], object]], object] | None = None
        self._caller_thread = 0
        self._sides: PerLoop[LoopSide] = PerLoop(self._new_side, _close_side)
        self.pause_until = 0.0
        """When the latest pause heard of ends (epoch seconds); 0: none."""
        self.closed = False
        self._lock = threading.Lock()
        super().__init__()
        self.after_fork()

    def __repr__(self) -> str:
        return f"FleetLink({self.settings.where!r}, prefix={self.prefix!r}, up={self.health.up})"

    def after_fork(self) -> None:
        """In a forked child (and at the start): no threads yet, an empty outbox."""
        self._started = False
        self._stop = threading.Event()
        self._outbox: deque[tuple[str, str, float]] = deque(maxlen=MAX_OUTBOX)
        self._wake_writer = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        super().after_fork()

    def key(self, *parts: str) -> str:
        """A key under this fleet's prefix: `prefix + "lease:" + scope + ":" + id`."""
        return self.prefix + ":".join(parts)

    # -- threads -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the listener and writer threads, if not yet (idempotent, any thread)."""
        self.check_fork()
        if self._started or self.closed:
            return
        with self._lock:
            if self._started or self.closed:
                return
            import_libraries()
            self._started = True
            for name, target in (("listener", self._listen), ("writer", self._write)):
                thread = threading.Thread(
                    target=target, name=f"modelslab-fetch-redis-{name}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads: the writer publishes what it still holds (within a second)."""
        self.closed = True
        self._stop.set()
        with self._wake_writer:
            self._wake_writer.notify_all()

    def join(self, timeout: float = 2.0) -> None:
        """Wait (up to `timeout` seconds in all) for the threads to end, after `close()`."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))

    async def aclose(self) -> None:
        """Close this loop's connections, and the threads (waited for off the loop)."""
        self.close()
        await self._sides.aclose()
        if self._threads and sniffio.current_async_library() == "asyncio":
            await anyio.to_thread.run_sync(self.join)

    def _sync_client(self, retries: int) -> redis.Redis:
        import redis  # noqa: PLC0415 - only a client with redis_url loads it
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        timeout = self.settings.timeout
        return redis.Redis.from_url(
            self.settings.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), retries),
        )

    def _listen(self) -> None:
        gap = DOWN_PING[0]
        while not self._stop.is_set():
            client = self._sync_client(retries=0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._catch_up(client)
                self.health.answered()
                gap = DOWN_PING[0]
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_SLICE)
                    if message is not None:
                        self.hear(message.get("data"))
            except Exception as exc:
                self.health.failed(exc)
                self._stop.wait(gap)
                gap = min(gap * 2, DOWN_PING[1])
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
                with contextlib.suppress(Exception):
                    client.close()

    def _catch_up(self, client: redis.Redis) -> None:
        """After a (re)subscription: what was published while this client did not listen."""
        pause = client.get(self.key("pause"))
        if pause is not None:
            self.hear(pause)
        watched = self.heard.watched() if self.heard.watched is not None else []
        for start in range(0, len(watched), 500):
            chunk = watched[start : start + 500]
            keys = [self.key("delivery", rid) for _, rid in chunk]
            keys += [self.key("result", scope, rid) for scope, rid in chunk]
            for found in client.mget(keys):
                if found is not None:
                    self.hear(found)

    def hear(self, data: object) -> None:
        """Act on one record of the fleet (published, or read from its key), ours included."""
        try:
            message = json.loads(data)  # type: ignore[arg-type]
            if not isinstance(message, dict):
                return
            kind, body = message.get("k"), message.get("b")
            if kind == "p":
                self._heard_pause(float(message["u"]))
            elif kind == "d" and isinstance(body, dict) and self.heard.delivery is not None:
                self.heard.delivery(str(message["t"]), body)
            elif kind == "r" and isinstance(body, dict) and self.heard.result is not None:
                self.heard.result(str(message["s"]), str(message["i"]), body)
        except Exception:  # Redis is shared ground: whatever is on the channel, go on
            logger.debug("ignored a message on %s that is not the fleet's", self.channel)

    def _heard_pause(self, until: float) -> None:
        if until > self.pause_until:
            self.pause_until = until
            left = until - time.time()
            if left > 0:
                logger.info("another worker was rate limited: pausing for %.2f s", left)

    def _write(self) -> None:
        client = self._sync_client(retries=0)
        last = time.monotonic()
        gap = DOWN_PING[0]
        try:
            while not (self._stop.is_set() and (not self._outbox or not self.health.up)):
                with self._wake_writer:
                    if not self._outbox and not self._stop.is_set():
                        self._wake_writer.wait(IDLE_PING if self.health.up else gap)
                try:
                    if not self.health.up or time.monotonic() - last >= IDLE_PING:
                        client.ping()
                        last = time.monotonic()
                        self.health.answered()
                        gap = DOWN_PING[0]
                    self._flush(client)
                except Exception as exc:
                    self.health.failed(exc)
                    if self._stop.is_set():
                        return
                    self._stop.wait(gap)
                    gap = min(gap * 2, DOWN_PING[1])
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def _flush(self, client: redis.Redis) -> None:
        while self._outbox:
            batch = list(self._outbox)[:500]
            pipe = client.pipeline(transaction=False)
            now = time.time()
            for key, message, until in batch:
                ms = int((until - now) * 1000)
                if ms <= 0:
                    continue  # already over
                if key:
                    pipe.set(key, message, px=ms)
                pipe.publish(self.channel, message)
            pipe.execute()
            for _ in batch:
                self._outbox.popleft()

    def _post(self, key: str, message: dict[str, Any], until: float) -> None:
        self._outbox.append((key, json.dumps(message, separators=(",", ":")), until))
        self.start()
        with self._wake_writer:
            self._wake_writer.notify()

    # -- what this client says -----------------------------------------------------------

    def publish_delivery(self, request_id: str, track_id: str, body: dict[str, Any]) -> None:
        """Tell the fleet of a delivery this client's receiver accepted (`body` redacted)."""
        key = self.key("delivery", request_id) if request_id else ""
        self._post(key, {"k": "d", "t": track_id, "b": body}, time.time() + KEPT_SECONDS)

    def publish_pause(self, seconds: float) -> None:
        """Tell the fleet that the account is rate limited for `seconds` from now."""
        until = time.time() + seconds
        self.pause_until = max(self.pause_until, until)
        self._post(self.key("pause"), {"k": "p", "u": until}, until)

    def pause_left(self) -> float:
        """Seconds until the latest pause heard of (or said) ends; 0 when none holds.

        Asked before every request: the first starts the threads, to hear pauses.
        """
        if not self._started:
            self.start()
        until = self.pause_until
        return 0.0 if until == 0.0 else max(until - time.time(), 0.0)

    async def take_turn(self) -> None:
        """Wait for room in the fleet's rate budget, and take it (skipped while Redis is down)."""
        if self.max_rate is None:
            return
        while True:
            wait = await self.run(lambda side: side.try_turn())
            if not wait:  # taken, or Redis down
                return
            await anyio.sleep(wait)

    def result_message(self, scope: str, request_id: str, body: dict[str, Any]) -> str:
        """The record of a finished job, as published and kept."""
        message = {"k": "r", "s": scope, "i": request_id, "b": body}
        return json.dumps(message, separators=(",", ":"))

    # -- commands on the event loop -------------------------------------------------------

    async def run(self, command: Callable[[LoopSide], Awaitable[T]]) -> T | None:
        """Run `command` on this loop's connection, within the settings' timeout.

        None if Redis is down or fails now: a frozen server costs the caller that once.
        """
        if not self.health.up or self.closed:
            return None
        refuse_library(sniffio.current_async_library())
        try:
            side = self._side()
            with anyio.fail_after(self.settings.timeout):
                result = await command(side)
        except Exception as exc:
            self.health.failed(exc)
            return None
        return result

    def _side(self) -> LoopSide:
        self.start()
        if self._caller is None or self._caller_thread != threading.get_ident():
            native = anyio.lowlevel.current_token().native_token
            self._caller = native.call_soon_threadsafe  # type: ignore[attr-defined]
            self._caller_thread = threading.get_ident()
        return self._sides.get()

    def _new_side(self) -> LoopSide:
        from ._loop_side import LoopSide  # noqa: PLC0415 - loads redis.asyncio and limits

        return LoopSide(self.settings, max_rate=self.max_rate)

    def _down(self) -> None:
        if self.heard.down is not None:
            self.heard.down()

    def _report(self, event: ClientEvent) -> None:
        # Events run on the loop this client last ran on, as every other event does.
        events = self._events
        if events is None:
            return
        caller = self._caller
        if caller is None or threading.get_ident() == self._caller_thread:
            events(event)
            return
        try:
            caller(lambda: events(event))
        except RuntimeError:  # that loop has ended: nobody there to hand it to
            events(event)


def refuse_library(library: str) -> None:
    """Refuse `redis_url` under any library but asyncio: redis.asyncio is asyncio's."""
    if library != "asyncio":
        raise ConfigurationError(
            f"redis_url works on asyncio only (redis.asyncio does not support {library}): "
            "use the blocking ModelsLab client, which runs its own asyncio loop, or run "
            "this AsyncModelsLab under asyncio, or leave redis_url out"
        )


_IMPORTS = threading.Lock()


def import_libraries() -> None:
    """Import redis and limits once, before any thread uses them.

    Two threads importing redis-py at once can deadlock in its circular imports.
    """
    with _IMPORTS:
        import limits.aio.storage  # noqa: PLC0415 - only a client with redis_url loads them
        import limits.aio.strategies  # noqa: F401, PLC0415
        import redis  # noqa: PLC0415
        import redis.asyncio  # noqa: PLC0415
        import redis.asyncio.retry  # noqa: F401, PLC0415


async def _close_side(side: LoopSide) -> None:
    await side.aclose()
