"""What a client reports as it works, for `on_event=`: typed, frozen events, one per fact.

```
ClientEvent
├── RequestSent        a request left, once admitted by the client's limits
├── ResponseReceived   the server answered it (any HTTP status)
├── RequestFailed      no answer could be read: the connection failed, timed out...
├── RetryScheduled     a request that failed is sent again after a delay
├── ClientPaused       a rate limit pauses every request of the client
├── FleetUnavailable   Redis (redis_url=) stopped answering: the client works on its own
└── FleetRestored      Redis answers again: the client shares work through it again
```
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._errors import ModelsLabError, RateLimitError

__all__ = [
    "ClientEvent",
    "ClientPaused",
    "EventCallback",
    "EventSink",
    "FleetRestored",
    "FleetUnavailable",
    "RequestFailed",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "event_sink",
]

logger = logging.getLogger("modelslab_fetch")


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base of every event a client reports to its `on_event` callback."""


@dataclass(frozen=True, slots=True)
class RequestSent(ClientEvent):
    """A request was sent (every attempt: a retry is a request too)."""

    request_id: str | None
    """The id asked about, or None for a request about no one id."""
    url: str
    """Where it went: `base_url` plus the endpoint's path (the key is never in it)."""


@dataclass(frozen=True, slots=True)
class ResponseReceived(ClientEvent):
    """The server answered a request, with any HTTP status."""

    request_id: str | None
    """The id asked about, or None."""
    url: str
    """Where the request went."""
    status_code: int
    """The HTTP status of the answer."""
    elapsed: float
    """Seconds from sending to the whole answer read, on the client's clock."""
    error: ModelsLabError | None
    """The error the answer stands for, or None for a usable answer."""


@dataclass(frozen=True, slots=True)
class RequestFailed(ClientEvent):
    """No answer could be read: the connection failed or timed out, or it was too large."""

    request_id: str | None
    """The id asked about, or None."""
    url: str
    """Where the request went."""
    error: ModelsLabError
    """What went wrong: an `APIConnectionError` (`APITimeoutError`, ...) or a
    `ResponseParseError` for an answer too large to read."""
    elapsed: float
    """Seconds from sending to the failure, on the client's clock."""


@dataclass(frozen=True, slots=True)
class RetryScheduled(ClientEvent):
    """A request (a `fetch()` retry, a `wait()` poll) failed; it is sent again after `delay` s."""

    request_id: str | None
    """The id asked about, or None."""
    attempt: int
    """Which attempt failed: 1 for the first request; for `wait()`, the poll's number."""
    delay: float
    """Seconds until the next attempt, a client-wide pause included."""
    error: Exception
    """Why the attempt failed."""


@dataclass(frozen=True, slots=True)
class ClientPaused(ClientEvent):
    """A rate limit pauses every request of the client for `seconds` (begun or made longer)."""

    seconds: float
    """How long from now no request is sent."""
    error: RateLimitError
    """The rate limit that caused it (`retry_after` holds the wait the server stated)."""


@dataclass(frozen=True, slots=True)
class FleetUnavailable(ClientEvent):
    """The Redis of `redis_url` stopped answering (or never did): one event per fault.

    Until `FleetRestored`, the client works alone; nothing is lost.
    """

    where: str
    """The server: scheme, host and port (never a password)."""
    reason: str
    """What failed: the error's type and text."""


@dataclass(frozen=True, slots=True)
class FleetRestored(ClientEvent):
    """The Redis of `redis_url` answers again after a `FleetUnavailable`."""

    where: str
    """The server: scheme, host and port (never a password)."""
    down_for: float
    """Seconds since the fault began."""


EventCallback = Callable[[ClientEvent], object]
"""What `on_event=` takes: a plain function called with each `ClientEvent`."""


class EventSink:
    """Hands events to the user's callback; one that raises is logged, never breaks a request."""

    __slots__ = ("_callback", "_failed")

    def __init__(self, callback: EventCallback) -> None:
        self._callback = callback
        self._failed = False

    def __repr__(self) -> str:
        return f"EventSink({self._callback!r})"

    def __call__(self, event: ClientEvent) -> None:
        """Report `event`; an `Exception` the callback raises is logged, not raised."""
        try:
            self._callback(event)
        except Exception:
            if self._failed:
                logger.debug("on_event raised again, for %s; ignored", type(event).__name__)
                return
            self._failed = True
            logger.warning(
                "on_event raised while handling %s; the request goes on (later errors of "
                "this callback are logged at debug level only)",
                type(event).__name__,
                exc_info=True,
            )


def event_sink(on_event: object) -> EventSink | None:
    """The sink for `on_event` (None: no events); `ConfigurationError` for an `async def`."""
    if on_event is None:
        return None
    if not callable(on_event):
        raise ConfigurationError(
            f"on_event must be a function taking one event; got {type(on_event).__name__}"
        )
    import inspect  # noqa: PLC0415 - only a client given on_event pays for it

    if inspect.iscoroutinefunction(on_event) or inspect.iscoroutinefunction(
        getattr(on_event, "__call__", None)  # noqa: B004 - an object with async __call__
    ):
        raise ConfigurationError(
            "on_event must be a plain function: it is called, not awaited, on the client's "
            "event loop, and must return quickly; to do async work, hand the event to a "
            "queue (e.g. an anyio memory stream's send_nowait) and await it elsewhere"
        )
    return EventSink(on_event)
