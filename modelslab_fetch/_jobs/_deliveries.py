"""The deliveries hub: webhook deliveries handed from any receiver to any wait, on any thread.

The receiver is never blocked: a lock for a few dict operations, then each waiter is woken
on its own loop. Deliveries that come before their wait (ModelsLab may deliver before the
generation request returns) are kept, bounded; duplicates (same id and status) are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from .._clock import Clock
from .._results import FetchResult, Status

__all__ = [
    "MAX_KEPT_AGE",
    "MAX_KEPT_BYTES",
    "MAX_KEPT_DELIVERIES",
    "DeliveryCallback",
    "DeliveryHub",
    "DeliveryIterator",
    "DeliveryStream",
    "Watch",
    "WebhookDelivery",
]

logger = logging.getLogger("modelslab_fetch")

R = TypeVar("R", bound=FetchResult)

MAX_KEPT_DELIVERIES = 10_000
"""The most job ids whose deliveries are kept for waits that have not started yet (and
for telling duplicates), and the most deliveries an iterator buffers unread."""
MAX_KEPT_AGE = 900.0
"""Seconds a delivery is kept (15 minutes): a wait that starts later finds it at once; a
duplicate that comes later than this is taken for a new delivery."""
MAX_KEPT_BYTES = 32 * 2**20
"""The most body bytes kept in all (32 MiB): at most 512 deliveries of the largest size
accepted, about 10,000 of ModelsLab's usual 1-3 kB."""


@dataclass(frozen=True, repr=False)
class WebhookDelivery:
    """One delivery ModelsLab POSTed to your webhook URL, checked and parsed.

    `result` is the payload read as a fetch answer (`FetchResult`), with the API key and
    the webhook URL redacted from it. It is what ModelsLab says; a wait confirms it with
    one fetch unless the client trusts webhooks (`trust_webhooks=True`).
    """

    track_id: str
    """The `track_id` of the webhook URL (and of the body: they must agree)."""
    request_id: str
    """The job's id as the payload gives it (`""` if it gave none)."""
    status: Status
    """The job's status as the payload gives it."""
    result: FetchResult
    """The payload, parsed as a fetch answer."""
    received_at: datetime
    """When the receiver accepted it (UTC)."""
    duplicate: bool = False
    """Whether the same id and status had been delivered already (within `MAX_KEPT_AGE`):
    `receive()` returns it all the same; no wait or iterator sees it twice."""
    size: int = field(default=0, compare=False)
    """The body's size in bytes."""

    @classmethod
    def received_now(cls, track_id: str, result: FetchResult, size: int) -> WebhookDelivery:
        """A delivery of `result` under `track_id`, received now; id and status are its own."""
        return cls(
            track_id=track_id,
            request_id=result.id,
            status=result.status,
            result=result,
            received_at=datetime.now(timezone.utc),
            size=size,
        )

    @property
    def id(self) -> str:
        """The job's id: `request_id`, named as ModelsLab's payload names it."""
        return self.request_id

    @property
    def finished(self) -> bool:
        """Whether the payload says the job is over (success, failed or error)."""
        return self.status.finished

    def __repr__(self) -> str:
        flag = ", duplicate=True" if self.duplicate else ""
        return (
            f"WebhookDelivery(request_id={self.request_id!r}, status={self.status.value!r}, "
            f"track_id={self.track_id!r}{flag})"
        )


DeliveryCallback = Callable[[WebhookDelivery], object]
"""Called with each new delivery, on the receiver's thread; it must return quickly."""


def _thread_safe_call() -> Callable[[Callable[[], object]], object] | None:
    """How to run a callback on the calling task's event loop from any other thread."""
    try:
        native = anyio.lowlevel.current_token().native_token
    except RuntimeError:  # no event loop in this thread (anyio's NoEventLoopError)
        return None
    run_sync_soon = getattr(native, "run_sync_soon", None)  # trio's TrioToken
    if run_sync_soon is not None:
        return run_sync_soon  # type: ignore[no-any-return]
    return native.call_soon_threadsafe  # type: ignore[attr-defined,no-any-return]  # asyncio


class _Waker:
    """Runs a callback on the event loop (and thread) it was made on, from any thread."""

    __slots__ = ("_call", "_callback", "_thread")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._thread = threading.get_ident()
        self._call = _thread_safe_call()

    def wake(self) -> None:
        if threading.get_ident() == self._thread or self._call is None:
            self._callback()  # the receiver runs on the waiter's own loop: no hand-off
            return
        # A loop that has ended raises (asyncio's RuntimeError, trio's RunFinishedError).
        with contextlib.suppress(Exception):
            self._call(self._callback)


@dataclass
class _Kept:
    at: float
    size: int = 0
    by_status: dict[Status, WebhookDelivery] = field(default_factory=dict)


class DeliveryHub:
    """Where a client's receiver leaves deliveries and its waits find them; thread-safe."""

    def __init__(
        self,
        *,
        trust: bool = False,
        pushes: bool = True,
        max_kept: int = MAX_KEPT_DELIVERIES,
        max_age: float = MAX_KEPT_AGE,
        max_bytes: int = MAX_KEPT_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trust = trust
        self.pushes = pushes
        """Whether webhooks are configured: a wait expects a delivery (and polls later)."""
        self._max_kept = max_kept
        self._max_age = max_age
        self._max_bytes = max_bytes
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._bytes = 0
        self._watches: dict[str, set[Watch[FetchResult]]] = {}
        # Finished records other workers fetched, by (scope, id): scope is the endpoint,
        # since a fetch answer is one endpoint's (ModelsLab's ids are per product).
        self._fetched: OrderedDict[tuple[str, str], tuple[float, FetchResult]] = OrderedDict()
        self._streams: weakref.WeakSet[_Stream] = weakref.WeakSet()
        self._callbacks: tuple[DeliveryCallback, ...] = ()
        self.closed = False

    def __repr__(self) -> str:
        return f"DeliveryHub(kept={len(self._kept)}, waiting={len(self._watches)})"

    @property
    def kept(self) -> int:
        """How many job ids have deliveries kept."""
        return len(self._kept)

    @property
    def waiting(self) -> int:
        """How many job ids have waits registered."""
        return len(self._watches)

    def offer(self, delivery: WebhookDelivery, *, local: bool = True) -> bool:
        """Keep `delivery` and wake what waits for it; False (and nothing else) if a duplicate.

        `local=False` (another worker's delivery) wakes waits only: iterators and callbacks
        see this process's own, so that a fleet handles each delivery once.
        """
        key = (delivery.request_id, "" if delivery.request_id else delivery.track_id)
        now = self._monotonic()
        with self._lock:
            self._expire(now)
            kept = self._kept.get(key)
            if kept is not None and delivery.status in kept.by_status:
                return False
            if kept is None:
                kept = self._kept[key] = _Kept(now)
            kept.by_status[delivery.status] = delivery
            kept.size += delivery.size
            self._bytes += delivery.size
            self._trim()
            watches: tuple[Watch[FetchResult], ...] = ()
            if delivery.request_id and delivery.finished:
                watches = tuple(self._watches.get(delivery.request_id, ()))
                for watch in watches:
                    watch._pending = delivery
            streams = tuple(self._streams) if local else ()
            callbacks = self._callbacks if local else ()
        # Woken outside the lock: a loop's thread-safe call takes locks of its own.
        for watch in watches:
            watch._waker.wake()
        for stream in streams:
            stream.push(delivery)
        for callback in callbacks:
            try:
                callback(delivery)
            except Exception:
                # The receiver must answer ModelsLab whatever the app's callback does.
                logger.exception("an on_delivery callback raised; the delivery is kept")
        return True

    def _expire(self, now: float) -> None:
        while self._kept:
            key, oldest = next(iter(self._kept.items()))
            if now - oldest.at <= self._max_age:
                return
            self._drop(key)

    def _trim(self) -> None:
        while len(self._kept) > self._max_kept or (
            self._bytes > self._max_bytes and len(self._kept) > 1
        ):
            self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, str]) -> None:
        self._bytes -= self._kept.pop(key).size

    def offer_fetched(self, scope: str, request_id: str, result: FetchResult) -> None:
        """A finished record another worker fetched: the result of every wait on it here."""
        now = self._monotonic()
        with self._lock:
            fetched = self._fetched
            fetched[(scope, request_id)] = (now, result)
            fetched.move_to_end((scope, request_id))
            while fetched and (
                len(fetched) > self._max_kept
                or now - next(iter(fetched.values()))[0] > self._max_age
            ):
                fetched.popitem(last=False)
            watches = tuple(w for w in self._watches.get(request_id, ()) if w.scope == scope)
            for watch in watches:
                watch._fetched = result
        for watch in watches:
            watch._waker.wake()

    def nudge_all(self) -> None:
        """Cut every wait's sleep short: each polls at once (the fleet's Redis went down)."""
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
            for watch in watches:
                watch._nudged = True
        for watch in watches:
            watch._waker.wake()

    def watched(self) -> list[tuple[str, str]]:
        """The `(scope, request_id)` of every wait registered now."""
        with self._lock:
            return list(
                dict.fromkeys((w.scope, rid) for rid, ws in self._watches.items() for w in ws)
            )

    def watch(
        self,
        request_id: str,
        *,
        parse: Callable[[FetchResult], R] | None = None,
        scope: str = "",
    ) -> Watch[R]:
        """A wait's interest in `request_id` (a context manager around the wait).

        `parse` makes the wait's result of a trusted delivery; `scope` names the endpoint.
        """
        return Watch(self, request_id, parse, scope)

    def _register(self, watch: Watch[R]) -> None:
        with self._lock:
            self._expire(self._monotonic())
            self._watches.setdefault(watch.request_id, set()).add(watch)  # type: ignore[arg-type]
            found = self._fetched.get((watch.scope, watch.request_id))
            if found is not None:
                watch._fetched = found[1]
            kept = self._kept.get((watch.request_id, ""))
            if kept is not None:
                finished = [d for d in kept.by_status.values() if d.finished]
                if finished:
                    watch._pending = finished[-1]

    def _unregister(self, watch: Watch[R]) -> None:
        with self._lock:
            found = self._watches.get(watch.request_id)
            if found is not None:
                found.discard(watch)
                if not found:
                    del self._watches[watch.request_id]

    def on_delivery(self, callback: DeliveryCallback) -> Callable[[], None]:
        """Call `callback` with each new delivery; return a function that stops it."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

        def remove() -> None:
            with self._lock:
                self._callbacks = tuple(c for c in self._callbacks if c is not callback)

        return remove

    def stream(self, *, backlog: bool = False) -> DeliveryStream:
        """An async iterator of the deliveries from now on (and those kept, if `backlog`)."""
        return self._subscribe(DeliveryStream(self), backlog)

    def iterator(self, *, backlog: bool = False) -> DeliveryIterator:
        """A blocking iterator of the deliveries from now on (and those kept, if `backlog`)."""
        return self._subscribe(DeliveryIterator(self), backlog)

    def _subscribe(self, stream: _S, backlog: bool) -> _S:
        with self._lock:
            if backlog:
                for kept in self._kept.values():
                    for delivery in kept.by_status.values():
                        stream.push(delivery)
            self._streams.add(stream)
        return stream

    def _unsubscribe(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def close(self) -> None:
        """End every iterator once it has handed out what it holds (deliveries still kept)."""
        with self._lock:
            self.closed = True
            streams = tuple(self._streams)
        for stream in streams:
            stream.end()


class Watch(Generic[R]):
    """One wait's registration with the hub, made on its loop: a delivery and a wake-up."""

    def __init__(
        self,
        hub: DeliveryHub,
        request_id: str,
        parse: Callable[[FetchResult], R] | None = None,
        scope: str = "",
    ) -> None:
        self._hub = hub
        self.request_id = request_id
        self.scope = scope
        self._parse = parse
        self._pending: WebhookDelivery | None = None
        self._fetched: FetchResult | None = None
        self._nudged = False  # its next sleep is cut short (see DeliveryHub.nudge_all)
        self.before_sleep: Callable[[float], Awaitable[None]] | None = None
        """Awaited with each sleep's length before it (the fleet's poller keeps its lease)."""
        self._scope: anyio.CancelScope | None = None
        self._waker = _Waker(self._cut_sleep)
        self.expecting = hub.pushes
        """Whether a delivery is still to come: webhooks are configured, and none has been
        acted upon yet."""

    def __repr__(self) -> str:
        return f"Watch({self.request_id!r}, pending={self._pending is not None})"

    def __enter__(self) -> Watch[R]:
        self._hub._register(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hub._unregister(self)

    @property
    def pending(self) -> bool:
        """Whether a delivery for this id arrived and has not been acted upon yet."""
        return self._pending is not None or self._fetched is not None

    def _take(self) -> WebhookDelivery | None:
        with self._hub._lock:
            delivery, self._pending = self._pending, None
        if delivery is not None:
            self.expecting = False
        return delivery

    def fetched(self) -> R | None:
        """A finished record another worker fetched for this id, as the wait's result."""
        if self._fetched is None or self._parse is None:
            return None
        with self._hub._lock:
            result, self._fetched = self._fetched, None
        if result is None:  # pragma: no cover - a race lost
            return None
        self.expecting = False
        try:
            return self._parse(result)
        except Exception:  # unreadable for this endpoint's model: let a fetch tell
            logger.debug("a shared record for %s did not parse; fetching", self.request_id)
            return None

    def trusted(self) -> R | None:
        """The result without a fetch: another worker's record, or a trusted delivery."""
        fetched = self.fetched()
        if fetched is not None:
            return fetched
        if not self._hub.trust or self._pending is None:
            return None
        delivery = self._take()
        if delivery is None or self._parse is None:  # pragma: no cover - a race lost
            return None
        try:
            return self._parse(delivery.result)
        except Exception:  # unreadable for this endpoint's model: let a fetch tell
            logger.debug("a delivery for %s did not parse; confirming by fetch", self.request_id)
            return None

    def confirming(self) -> None:
        """A fetch is about to be sent: it confirms any pending delivery."""
        if self._pending is not None:
            self._take()

    async def sleep(self, clock: Clock, seconds: float) -> None:
        """Sleep `seconds` on `clock`, or until a delivery for this id arrives."""
        if self.before_sleep is not None:
            await self.before_sleep(seconds)
        if self.pending or self._nudged:
            self._nudged = False
            await anyio.lowlevel.checkpoint()
            return
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                await clock.sleep(seconds)
            finally:
                self._scope = None

    def _cut_sleep(self) -> None:
        # A wake-up that comes after its delivery was acted upon cuts nothing.
        if self._scope is not None and (self.pending or self._nudged):
            self._nudged = False
            self._scope.cancel()


class _Stream:
    """A bounded buffer of deliveries for one reader; when full, the oldest is dropped."""

    def __init__(self, hub: DeliveryHub) -> None:
        self._hub = hub
        self._buffer: deque[WebhookDelivery] = deque(maxlen=MAX_KEPT_DELIVERIES)
        self._ended = hub.closed
        self.dropped = 0
        """Deliveries dropped unread because the buffer was full."""

    def push(self, delivery: WebhookDelivery) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "webhook deliveries are not being read: the oldest are dropped "
                    "(waits still see them)"
                )
        self._buffer.append(delivery)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        raise NotImplementedError


_S = TypeVar("_S", bound=_Stream)


class DeliveryStream(_Stream, AsyncIterator[WebhookDelivery]):
    """`async for delivery in client.webhooks.deliveries()`: each new delivery once.

    Ends when the client closes, or on `aclose()` (or the end of an `async with` block).
    """

    def __init__(self, hub: DeliveryHub) -> None:
        super().__init__(hub)
        self._event: anyio.Event | None = None
        self._waker: _Waker | None = None

    def __repr__(self) -> str:
        return f"DeliveryStream(unread={len(self._buffer)}, ended={self._ended})"

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()

    def _set(self) -> None:
        event = self._event
        if event is not None:
            event.set()

    async def __anext__(self) -> WebhookDelivery:
        while True:
            if self._buffer:
                await anyio.lowlevel.checkpoint()
                return self._buffer.popleft()
            if self._ended:
                raise StopAsyncIteration
            self._event = anyio.Event()
            self._waker = _Waker(self._set)
            try:
                # Checked again: a push between the test above and the waker is not lost.
                if not self._buffer and not self._ended:
                    await self._event.wait()
            finally:
                self._event = self._waker = None

    async def aclose(self) -> None:
        """Stop receiving deliveries; those not read yet are dropped."""
        self._hub._unsubscribe(self)
        self._buffer.clear()
        self._ended = True

    async def __aenter__(self) -> DeliveryStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class DeliveryIterator(_Stream, Iterator[WebhookDelivery]):
    """`for delivery in client.webhooks.deliveries()` on the blocking client.

    Blocks until the next delivery; ends when the client closes, or on `close()` (or the
    end of a `with` block).
    """

    def __init__(self, hub: DeliveryHub) -> None:
        super().__init__(hub)
        self._ready = threading.Condition(threading.Lock())

    def __repr__(self) -> str:
        return f"DeliveryIterator(unread={len(self._buffer)}, ended={self._ended})"

    def _wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def __next__(self) -> WebhookDelivery:
        with self._ready:
            while not self._buffer:
                if self._ended:
                    raise StopIteration
                # In slices, so that Ctrl-C reaches a main thread waiting here.
                self._ready.wait(timeout=0.5)
            return self._buffer.popleft()

    def close(self) -> None:
        """Stop receiving deliveries; those not read yet are dropped."""
        self._hub._unsubscribe(self)
        self._buffer.clear()
        self.end()

    def __enter__(self) -> DeliveryIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
