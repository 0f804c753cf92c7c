"""The blocking twins of a resource and a batch: the same calls, run by a blocking runner.

A twin is declared `def wait(self, *args, **kwargs) -> R` under
`@parameters_of(AsyncFetchResource.wait)`: type checkers and `help()` see the async
method's parameters (a ParamSpec) with the twin's own return type.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast

from .._closing import ClosesOnExit
from .._jobs._batch import AsyncBatch, Failure, Success
from .._results import FetchResult
from ._resource import AsyncFetchResource

__all__ = ["Runner", "SyncBatch", "SyncFetchResource", "parameters_of"]

R = TypeVar("R", bound=FetchResult)
T = TypeVar("T")
P = ParamSpec("P")


def parameters_of(
    model: Callable[Concatenate[Any, P], Any],
) -> Callable[[Callable[..., T]], Callable[Concatenate[Any, P], T]]:
    """Give the decorated method the parameters of `model` (a method of the async twin)."""

    def decorate(twin: Callable[..., T]) -> Callable[Concatenate[Any, P], T]:
        own_return = inspect.signature(twin).return_annotation
        twin.__signature__ = inspect.signature(model).replace(  # type: ignore[attr-defined]
            return_annotation=own_return
        )
        return cast(Callable[Concatenate[Any, P], T], twin)

    return decorate


class Runner(Protocol):
    """Where blocking calls run (the blocking client's loop thread)."""

    @property
    def started(self) -> bool:
        """Whether anything has run yet."""

    @property
    def closed(self) -> bool:
        """Whether the runner is closing or closed."""

    def run(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run `func(*args)` and block until it returns or raises."""

    def spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start `func(*args)` and return at once."""

    def check_open(self) -> None:
        """Raise `ClientClosedError` once closed."""


_OUTCOMES_PER_HANDOFF = 256


class SyncBatch(ClosesOnExit, Iterator[Success[R] | Failure[R]], Generic[R]):
    """The blocking twin of `Batch`: iterate it for one `Outcome` per input id.

    Outcomes stream as they are ready; the work waits while you do not read. Leaving the
    loop early, `close()` or the end of a `with` block stops it.
    """

    def __init__(self, batch: AsyncBatch[R], loop: Runner) -> None:
        self._batch = batch
        self._loop = loop
        self._ready: deque[Success[R] | Failure[R]] = deque()
        self._finished = False

    def __repr__(self) -> str:
        return "Sync" + repr(self._batch).removeprefix("Async")

    def __next__(self) -> Success[R] | Failure[R]:
        if not self._ready and not self._finished:
            self._ready.extend(self._loop.run(self._batch.next_many, _OUTCOMES_PER_HANDOFF))
            self._finished = not self._ready
        if not self._ready:
            raise StopIteration
        return self._ready.popleft()

    def close(self) -> None:
        """Stop all work of the batch. Safe to call twice, and after the client closed."""
        if self._finished:
            return
        self._finished = True
        self._ready.clear()
        if self._loop.started and not self._loop.closed:
            self._loop.run(self._batch.aclose)

    def __del__(self) -> None:
        # A `for` loop left with `break`: stop the work without blocking the collector.
        if not getattr(self, "_finished", True):
            self._finished = True
            self._loop.spawn(self._batch.aclose)


class SyncFetchResource(Generic[R]):
    """The blocking twin of `AsyncFetchResource`: the same calls, on the client's event loop.

    Each call takes exactly the parameters of its async twin (see `parameters_of`).
    """

    def __init__(self, resource: AsyncFetchResource[R], loop: Runner) -> None:
        self._async = resource
        self._loop = loop

    def __repr__(self) -> str:
        return "Sync" + repr(self._async).removeprefix("Async")

    @parameters_of(AsyncFetchResource.fetch)
    def fetch(self, *args: Any, **kwargs: Any) -> R:
        """Ask once where the job stands; see `AsyncFetchResource.fetch`."""
        return self._loop.run(partial(self._async.fetch, *args, **kwargs))

    @parameters_of(AsyncFetchResource.wait)
    def wait(self, *args: Any, **kwargs: Any) -> R:
        """Poll the job until it finishes; see `AsyncFetchResource.wait`.

        `on_update` is called in the client's loop thread, not yours.
        """
        return self._loop.run(partial(self._async.wait, *args, **kwargs))

    @parameters_of(AsyncFetchResource.fetch_many)
    def fetch_many(self, *args: Any, **kwargs: Any) -> SyncBatch[R]:
        """Fetch each id once, one `Outcome` per input id; see `AsyncFetchResource.fetch_many`."""
        self._loop.check_open()
        return SyncBatch(self._async.fetch_many(*args, **kwargs), self._loop)

    @parameters_of(AsyncFetchResource.wait_many)
    def wait_many(self, *args: Any, **kwargs: Any) -> SyncBatch[R]:
        """Wait for each id, one `Outcome` per input id; see `AsyncFetchResource.wait_many`."""
        self._loop.check_open()
        return SyncBatch(self._async.wait_many(*args, **kwargs), self._loop)
