"""The blocking `ModelsLab`: every call forwarded to an `AsyncModelsLab` on its loop thread."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from .._closing import ClosesOnExit
from .._config import ClientConfig
from .._endpoints._blocking import SyncBatch, SyncFetchResource, parameters_of
from .._endpoints._surface import SyncSurface
from .._endpoints.table import ClientEndpoints, Enterprise
from .._jobs._downloads import Downloaded
from .._results import FetchResult
from ._async import AsyncModelsLab, ClientSettings, _blocking_construction
from ._loop_thread import LoopThread
from ._webhooks import Webhooks

__all__ = ["Enterprise", "ModelsLab", "SyncBatch", "SyncFetchResource"]


class ModelsLab(ClosesOnExit, ClientSettings, ClientEndpoints, SyncSurface):
    """The blocking ModelsLab fetch client, for scripts, notebooks and legacy code.

    It takes the same options as `AsyncModelsLab` and offers the same calls, returning
    results instead of awaitables. The work runs on the client's own event loop thread,
    started by the first call and ended by `close()` or the end of a `with` block, so the
    client works from many threads at once, and inside a running event loop (Jupyter).
    """

    @parameters_of(AsyncModelsLab.__init__)
    def __init__(self, **options: Any) -> None:
        token = _blocking_construction.set(True)  # its own asyncio loop: redis_url works
        try:
            self._async = AsyncModelsLab(**options)
        finally:
            _blocking_construction.reset(token)
        # An httpx.AsyncClient's connections belong to one loop: clients given one share it.
        lease = _LoopLease.take(options.get("http_client"))
        loop = lease.loop
        # A client never closed is closed when it is collected (or at exit).
        self._finalizer = weakref.finalize(self, lease.release, self._async.aclose)
        self._parent: ModelsLab | None = None
        self._wire(self._async, loop)

    def _wire(self, async_client: AsyncModelsLab, loop: LoopThread) -> None:
        self._async = async_client
        self._loop = loop
        self._webhooks = Webhooks(async_client.webhooks._receiver_or_none)
        self._bind(lambda endpoint: SyncFetchResource(async_client._resource_for(endpoint), loop))

    @parameters_of(AsyncModelsLab.with_options)
    def with_options(self, **options: Any) -> ModelsLab:
        """A client with other settings, sharing this one's thread, connections and limits.

        See `AsyncModelsLab.with_options`. Closing either closes both.
        """
        other = object.__new__(type(self))
        other._finalizer = self._finalizer  # one owner of the event loop and connections
        other._parent = self  # this client (and so its finalizer) lives while the copy does
        other._wire(self._async.with_options(**options), self._loop)
        return other

    def _settings(self) -> ClientConfig:
        return self._async._config

    @property
    def requests_in_flight(self) -> int:
        """HTTP requests in flight now (read from any thread); see `AsyncModelsLab`."""
        return self._async.requests_in_flight

    @property
    def webhooks(self) -> Webhooks:
        """ModelsLab's webhooks; see `AsyncModelsLab.webhooks`. `deliveries()` blocks."""
        return self._webhooks

    @parameters_of(AsyncModelsLab.wait_for)
    def wait_for(self, *args: Any, **kwargs: Any) -> FetchResult:
        """Wait for the job a generation request queued; see `AsyncModelsLab.wait_for`."""
        return self._loop.run(partial(self._async.wait_for, *args, **kwargs))

    @parameters_of(AsyncModelsLab.wait_for_many)
    def wait_for_many(self, *args: Any, **kwargs: Any) -> SyncBatch[FetchResult]:
        """`wait_for` for many responses, one `Outcome` each; see `AsyncModelsLab.wait_for_many`."""
        self._loop.check_open()
        return SyncBatch(self._async.wait_for_many(*args, **kwargs), self._loop)

    def download(self, result: FetchResult, directory: str | os.PathLike[str]) -> list[Path]:
        """Save `result`'s images into `directory`; see `AsyncModelsLab.download`."""
        return self._loop.run(self._async.download, result, directory)

    def download_many(
        self, results: Iterable[FetchResult], directory: str | os.PathLike[str]
    ) -> list[Downloaded]:
        """Save the images of many results; see `AsyncModelsLab.download_many`."""
        return self._loop.run(self._async.download_many, list(results), directory)

    def close(self) -> None:
        """Cancel calls in flight, close connections and the event loop. Idempotent."""
        self._finalizer()
        self._loop.wait_closed()  # closed by another thread meanwhile: returns when done
        # Its iterators and Redis threads too, even if its loop never ran.
        self._async.webhooks.close()
        fleet = self._async._fleet
        if fleet is not None:
            fleet.close()
            fleet.join()


class _LoopLease:
    """One blocking client's use of an event loop: its own, or one shared per http_client."""

    def __init__(self, loop: LoopThread, key: httpx.AsyncClient | None) -> None:
        self.loop = loop
        self._key = key
        self._users = 0

    def __repr__(self) -> str:
        return f"_LoopLease({self.loop!r}, users={self._users})"

    @classmethod
    def take(cls, http_client: httpx.AsyncClient | None) -> _LoopLease:
        """A lease on a fresh event loop, or on the one `http_client` already runs on."""
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
            if self.loop.in_its_thread:  # a finalizer run by the loop's own thread
                self.loop.spawn(cleanup)
            else:
                self.loop.run(cleanup)


async def _close_connections(http_client: httpx.AsyncClient) -> None:
    """Close the connections of your `http_client` on a loop about to stop; it stays open."""
    transports = [getattr(http_client, "_transport", None)]
    transports += list(getattr(http_client, "_mounts", {}).values())
    for transport in transports:
        if transport is not None:
            await transport.aclose()


# Leases on event loops shared per http_client, forgotten with the http_client.
_SHARED_LEASES: weakref.WeakKeyDictionary[httpx.AsyncClient, _LoopLease] = (
    weakref.WeakKeyDictionary()
)
_LEASES_LOCK = threading.Lock()
