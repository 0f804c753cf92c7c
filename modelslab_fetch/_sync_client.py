"""Layer 4, blocking: `ModelsLab` forwards every call to an `AsyncModelsLab` on a private loop."""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from ._async_client import AsyncModelsLab
from ._batch import Batch, Outcome, ProgressCallback
from ._clock import Clock
from ._config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    NotGiven,
)
from ._downloads import Downloaded
from ._endpoint import FetchEndpoint, FetchResource
from ._endpoints._surface import SyncSurface
from ._endpoints.table import ClientEndpoints, Enterprise
from ._ids import RequestId
from ._loop_thread import LoopThread
from ._models import FetchResult
from ._polling import DEFAULT_WAIT_TIMEOUT, PollPolicy
from ._retry_policy import RetryPolicy
from ._routing import Queued
from ._tls import CertTypes, VerifyTypes
from ._updates import UpdateCallback

__all__ = ["Enterprise", "ModelsLab", "SyncBatch", "SyncFetchResource"]

R = TypeVar("R", bound=FetchResult)

_OUTCOMES_PER_HANDOFF = 256


class SyncBatch(Iterator[Outcome[R]], Generic[R]):
    """The blocking twin of `Batch`: iterate it for one `Outcome` per input id.

    Outcomes stream from the client's loop thread as they are ready (a few hundred per
    hand-off at most), so a batch is never collected whole, and the work waits while you
    do not read. Leaving the loop early, `close()` or the end of a `with` block stops it.
    """

    def __init__(self, batch: Batch[R], loop: LoopThread) -> None:
        self._batch = batch
        self._loop = loop
        self._ready: deque[Outcome[R]] = deque()
        self._finished = False

    def __repr__(self) -> str:
        return f"Sync{self._batch!r}"

    def __next__(self) -> Outcome[R]:
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

    def __enter__(self) -> SyncBatch[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A `for` loop left with `break` drops the iterator: stop the work it started,
        # without blocking whatever thread the garbage collector runs in.
        if not getattr(self, "_finished", True):
            self._finished = True
            self._loop.spawn(self._batch.aclose)


class SyncFetchResource(Generic[R]):
    """The blocking twin of `FetchResource`: the same calls, run on the client's loop thread."""

    def __init__(self, resource: FetchResource[R], loop: LoopThread) -> None:
        self._resource = resource
        self._loop = loop

    def __repr__(self) -> str:
        return f"Sync{self._resource!r}"

    def fetch(self, request_id: RequestId) -> R:
        """Ask once where the job stands; see `FetchResource.fetch`."""
        return self._loop.run(self._resource.fetch, request_id)

    def wait(
        self,
        request_id: RequestId,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_update: UpdateCallback | None = None,
    ) -> R:
        """Poll the job until it finishes; see `FetchResource.wait`.

        `on_update` is called on the client's loop thread.
        """

        async def wait() -> R:
            return await self._resource.wait(request_id, timeout=timeout, on_update=on_update)

        return self._loop.run(wait)

    def fetch_many(
        self,
        ids: Iterable[RequestId] | AsyncIterable[RequestId],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> SyncBatch[R]:
        """Fetch each id once, one `Outcome` per input id; see `FetchResource.fetch_many`."""
        self._loop.check_open()
        batch = self._resource.fetch_many(
            ids, concurrency=concurrency, ordered=ordered, on_progress=on_progress
        )
        return SyncBatch(batch, self._loop)

    def wait_many(
        self,
        ids: Iterable[RequestId] | AsyncIterable[RequestId],
        *,
        concurrency: int | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
        on_update: UpdateCallback | None = None,
    ) -> SyncBatch[R]:
        """Wait for each id, one `Outcome` per input id; see `FetchResource.wait_many`."""
        self._loop.check_open()
        batch = self._resource.wait_many(
            ids,
            concurrency=concurrency,
            timeout=timeout,
            ordered=ordered,
            on_progress=on_progress,
            on_update=on_update,
        )
        return SyncBatch(batch, self._loop)


class ModelsLab(ClientEndpoints, SyncSurface):
    """The blocking ModelsLab fetch client, for scripts, notebooks and legacy code.

    It takes the same options as `AsyncModelsLab` and offers the same calls, returning
    results instead of awaitables. The work runs on a private event loop in one background
    thread, started on first use and stopped by `close()` or the end of a `with` block, so
    it also works inside a running event loop (Jupyter) and from many threads at once.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_requests_per_second: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        poll_policy: PollPolicy | None = None,
        clock: Clock | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
        default_headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._async = AsyncModelsLab(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_requests_per_second=max_requests_per_second,
            http_client=http_client,
            poll_policy=poll_policy,
            clock=clock,
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
            default_headers=default_headers,
            retry_policy=retry_policy,
        )
        # An httpx.AsyncClient's connections belong to one event loop: blocking clients
        # given the same one share one loop thread, so it works across all of them.
        lease = _LoopLease.take(http_client)
        loop = lease.loop
        # A client never closed would keep its thread, loop and connections for the life
        # of the process: close them when it is collected (or at exit) instead.
        self._finalizer = weakref.finalize(self, lease.release, self._async.aclose)
        self._parent: ModelsLab | None = None
        self._wire(self._async, loop)

    def _wire(self, async_client: AsyncModelsLab, loop: LoopThread) -> None:
        self._async = async_client
        self._loop = loop
        resources: dict[FetchEndpoint[Any], SyncFetchResource[Any]] = {}

        def resource(endpoint: FetchEndpoint[Any]) -> SyncFetchResource[Any]:
            # The blocking twin of the async client's resource for the same row.
            found = resources.get(endpoint)
            if found is None:
                found = resources[endpoint] = SyncFetchResource(
                    async_client._resource_for(endpoint), loop
                )
            return found

        self._bind(resource)

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        poll_policy: PollPolicy | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven | None = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
    ) -> ModelsLab:
        """A client with other settings, sharing this one's thread, connections and limits.

        See `AsyncModelsLab.with_options`. Closing either closes both.
        """
        twin = object.__new__(type(self))
        twin._finalizer = self._finalizer  # one owner of the loop thread and connections
        twin._parent = self  # this client (and so its finalizer) lives while the twin does
        twin._wire(
            self._async.with_options(
                timeout=timeout,
                max_retries=max_retries,
                poll_policy=poll_policy,
                retry_policy=retry_policy,
                default_headers=default_headers,
            ),
            self._loop,
        )
        return twin

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._async.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        """The per-request timeout."""
        return self._async.timeout

    @property
    def max_retries(self) -> int:
        """How many times a transient failure is retried."""
        return self._async.max_retries

    @property
    def max_concurrency(self) -> int:
        """The most HTTP requests in flight at once, client-wide."""
        return self._async.max_concurrency

    @property
    def max_requests_per_second(self) -> float | None:
        """The client-wide cap on the request rate, if any."""
        return self._async.max_requests_per_second

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def wait_for(
        self,
        queued: Queued,
        *,
        endpoint: str | FetchEndpoint[Any] | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_update: UpdateCallback | None = None,
    ) -> FetchResult:
        """Wait for the job a generation request queued; see `AsyncModelsLab.wait_for`."""

        async def wait_for() -> FetchResult:
            return await self._async.wait_for(
                queued, endpoint=endpoint, timeout=timeout, on_update=on_update
            )

        return self._loop.run(wait_for)

    def wait_for_many(
        self,
        queued_items: Iterable[Queued] | AsyncIterable[Queued],
        *,
        endpoint: str | FetchEndpoint[Any] | None = None,
        concurrency: int | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
        on_update: UpdateCallback | None = None,
    ) -> SyncBatch[FetchResult]:
        """`wait_for` for many responses, one `Outcome` each; see `AsyncModelsLab.wait_for_many`."""
        self._loop.check_open()
        batch = self._async.wait_for_many(
            queued_items,
            endpoint=endpoint,
            concurrency=concurrency,
            timeout=timeout,
            ordered=ordered,
            on_progress=on_progress,
            on_update=on_update,
        )
        return SyncBatch(batch, self._loop)

    def download(self, result: FetchResult, directory: str | os.PathLike[str]) -> list[Path]:
        """Save `result`'s images into `directory`; see `AsyncModelsLab.download`."""
        return self._loop.run(self._async.download, result, directory)

    def download_many(
        self, results: Iterable[FetchResult], directory: str | os.PathLike[str]
    ) -> list[Downloaded]:
        """Save the images of many results; see `AsyncModelsLab.download_many`."""
        return self._loop.run(self._async.download_many, list(results), directory)

    def close(self) -> None:
        """Cancel calls in flight, close connections and stop the loop thread. Idempotent."""
        self._finalizer()

    def __enter__(self) -> ModelsLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _LoopLease:
    """One blocking client's use of a loop thread: its own, or one shared per http_client."""

    def __init__(self, loop: LoopThread, key: httpx.AsyncClient | None) -> None:
        self.loop = loop
        self._key = key
        self._users = 0

    def __repr__(self) -> str:
        return f"_LoopLease({self.loop!r}, users={self._users})"

    @classmethod
    def take(cls, http_client: httpx.AsyncClient | None) -> _LoopLease:
        """A lease on a fresh loop thread, or on the one `http_client` already runs on."""
        if http_client is None:
            lease = cls(LoopThread(), None)
            lease._users = 1
            return lease
        with _LEASES_LOCK:
            found = _SHARED_LEASES.get(http_client)
            if found is None or found.loop.closed:
                found = _SHARED_LEASES[http_client] = cls(LoopThread(), http_client)
            found._users += 1
            return found

    def release(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Close one client (`cleanup` on the loop); stop the thread with its last user."""
        with _LEASES_LOCK:
            self._users -= 1
            last = self._users <= 0
            if last and self._key is not None and _SHARED_LEASES.get(self._key) is self:
                del _SHARED_LEASES[self._key]
        if last and self._key is not None:
            http_client = self._key

            async def cleanup_and_disconnect() -> None:
                try:
                    await cleanup()
                finally:
                    await _close_connections(http_client)

            self.loop.close(cleanup_and_disconnect)
        elif last:
            self.loop.close(cleanup)
        elif self.loop.started and not self.loop.closed:
            self.loop.run(cleanup)


async def _close_connections(http_client: httpx.AsyncClient) -> None:
    """Close the connections of your `http_client` that live on a loop about to stop.

    They cannot outlive their event loop, and nothing else could close them once it has
    stopped. The client itself stays open and yours: used again (by a new blocking
    client), it opens new connections.
    """
    transports = [getattr(http_client, "_transport", None)]
    transports += list(getattr(http_client, "_mounts", {}).values())
    for transport in transports:
        if transport is not None:
            await transport.aclose()


# Leases on loop threads shared per http_client, forgotten with the http_client.
_SHARED_LEASES: weakref.WeakKeyDictionary[httpx.AsyncClient, _LoopLease] = (
    weakref.WeakKeyDictionary()
)
_LEASES_LOCK = threading.Lock()
