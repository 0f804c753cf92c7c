"""Connections per event loop, and what a forked child must start afresh and leave alone.

An aiohttp session or an httpx client belongs to the event loop it first ran on: its
pooled sockets are registered with that loop, and its futures are that loop's. A client
kept at module level and used from two event loops in turn (two `run()` calls:
scripts, Celery tasks) therefore holds them per loop: `PerLoop` makes one on first use
in a loop and closes it while that loop shuts down. After `os.fork()` the child holds
copies of the parent's sockets and loop: closing them would unregister or, with TLS,
write on the parent's connections, and a finalizer closing them would warn. They are
left behind instead: kept alive, untouched, until the child ends. Every object that
holds such state is a `ForkAware`, reset by one at-fork hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

import anyio.lowlevel
import sniffio

from ._errors import ConfigurationError

__all__ = ["ForkAware", "LoopCheck", "PerLoop", "leave_behind", "running_asyncio_loop"]

logger = logging.getLogger("modelslab_fetch")

T = TypeVar("T")

_left_behind: list[object] = []
# One extra reference that is never given back: even interpreter exit, which clears
# module globals, must not run the finalizers of what a forked child left behind. (Not
# CPython: no pythonapi, and the list lives to exit only.)
with contextlib.suppress(AttributeError, OSError):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_left_behind))


def leave_behind(*objects: object) -> None:
    """Keep `objects` alive for the rest of the process, so no finalizer of theirs runs.

    For what a forked child inherited: the parent's loop, sockets and sessions.
    """
    _left_behind.extend(objects)


class ForkAware:
    """State a forked child must not share with its parent: `after_fork()` resets it there.

    It runs in the child from the at-fork hook or, for a fork the hook did not see (one
    made by a C extension), at the next `check_fork()`.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        _fork_aware.add(self)

    def check_fork(self) -> None:
        """Reset now if this process is a fork the at-fork hook did not see."""
        if self._pid != os.getpid():
            self.after_fork()

    def after_fork(self) -> None:
        """Start afresh in a forked child; subclasses reset their own state, then call this."""
        self._pid = os.getpid()


_fork_aware: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs only in a forked child
    for each in list(_fork_aware):
        each.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

_Binding = tuple[T, AsyncGenerator[None, None]]


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, when the code running is asyncio's; else None (trio).

    A tenth of the cost of anyio's loop token, for the checks made on every request.
    Trio run as a guest of an asyncio loop says so through sniffio, and gets None; anyio's
    run() and portals say "asyncio" there, which is asyncio.
    """
    library = sniffio.thread_local.name or sniffio.current_async_library_cvar.get()
    if library not in (None, "asyncio"):
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PerLoop(ForkAware, Generic[T]):
    """One `T` per event loop: made by `create()` on first use in a loop, closed with it.

    The value of a loop is closed by `close(value)` when `aclose()` is awaited in that
    loop, or else while the loop shuts down (the standard library's and anyio's `run()` finish
    async generators before closing the loop: a keeper generator per value rides on
    that). A forked child starts with none and leaves the parent's untouched.
    """

    def __init__(self, create: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> None:
        self._create = create
        self._close = close
        self._bindings: dict[anyio.lowlevel.EventLoopToken, _Binding[T]] = {}
        # The asyncio loop of the last get() and its value: the common case, asked on
        # every request, is answered without anyio's token. Forgotten whenever a
        # binding goes.
        self._last: tuple[object, T] | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"PerLoop({len(self._bindings)} loop(s))"

    def get(self) -> T:
        """The value for the running event loop, made now if this loop has none yet."""
        self.check_fork()
        last = self._last
        if last is not None and running_asyncio_loop() is last[0]:
            return last[1]
        token = anyio.lowlevel.current_token()
        binding = self._bindings.get(token)
        if binding is None:
            binding = self._bind(token)
        self._last = (token.native_token, binding[0])
        return binding[0]

    async def aclose(self) -> None:
        """Close the running loop's value now; other loops' close as those loops end."""
        self.check_fork()
        self._last = None
        binding = self._bindings.pop(anyio.lowlevel.current_token(), None)
        self._drop_stale()
        if binding is not None:
            await binding[1].aclose()  # its `finally` closes the value

    def after_fork(self) -> None:
        """In a forked child: forget the parent's values without touching them."""
        leave_behind(*self._bindings.values())
        self._bindings = {}
        self._last = None
        super().after_fork()

    def _bind(self, token: anyio.lowlevel.EventLoopToken) -> _Binding[T]:
        self._drop_stale()
        value = self._create()
        keeper = self._keep(token, value)
        # Run the keeper to its `yield` now, without awaiting: its first step registers
        # it with the running loop, which closes it (running its `finally`) at shutdown.
        with contextlib.suppress(StopIteration):  # StopIteration is how it says "yielded"
            keeper.asend(None).send(None)
        binding = (value, keeper)
        self._bindings[token] = binding
        return binding

    async def _keep(
        self, token: anyio.lowlevel.EventLoopToken, value: T
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            binding = self._bindings.get(token)
            if binding is not None and binding[0] is value:
                del self._bindings[token]
            self._last = None
            await self._close(value)

    def _drop_stale(self) -> None:
        # A loop closed without finishing its async generators (loop.close() after
        # run_until_complete(), without shutdown_asyncgens()) never closed its value,
        # and nothing can close it now that its loop is gone; finalizers would warn.
        for token, binding in list(self._bindings.items()):
            is_closed = getattr(token.native_token, "is_closed", None)
            if is_closed is not None and is_closed():
                del self._bindings[token]
                self._last = None
                leave_behind(binding)
                logger.warning(
                    "an event loop was closed before this client's connections on it: "
                    "they are left open; run each loop with its library's run() (or call "
                    "loop.run_until_complete(loop.shutdown_asyncgens()) before "
                    "loop.close()), or await client.aclose() before the loop ends"
                )


class LoopCheck(ForkAware):
    """Refuses, with a clear error, to use your `http_client` outside the loop it belongs to."""

    def __init__(self) -> None:
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._forked = False
        super().__init__()

    def __repr__(self) -> str:
        return f"LoopCheck(bound={self._token is not None})"

    def check(self) -> None:
        """Raise `ConfigurationError` unless the running loop is the first one seen here."""
        self.check_fork()
        if self._forked:
            raise ConfigurationError(
                "the http_client you passed was created before os.fork(): its connections "
                "are the parent process's and cannot be used in the child; create the "
                "httpx.AsyncClient (and the ModelsLab client) in the child process, e.g. "
                "in gunicorn's post_fork hook or your multiprocessing worker's initializer"
            )
        token = anyio.lowlevel.current_token()
        if self._token is None:
            self._token = token
        elif token != self._token:
            is_closed = getattr(self._token.native_token, "is_closed", None)
            state = "closed since" if is_closed is not None and is_closed() else "still open"
            raise ConfigurationError(
                f"the http_client you passed was first used on another event loop ({state}); "
                "an httpx.AsyncClient's connections belong to one event loop: create one "
                "httpx.AsyncClient and one AsyncModelsLab per event loop (per run() call), "
                "or leave out http_client= so that the client makes its own per loop"
            )

    def after_fork(self) -> None:
        """In a forked child: the client you passed is the parent's, never to be used."""
        self._forked = True
        super().after_fork()
