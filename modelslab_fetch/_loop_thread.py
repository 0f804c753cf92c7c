"""A private event loop in one background thread, which blocking code hands coroutines to."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._errors import ClientClosedError
from ._per_loop import leave_behind

__all__ = ["LoopThread"]

T = TypeVar("T")

_CLOSED_MESSAGE = "this client is closed; create a new one"


class LoopThread:
    """Runs coroutine functions on an anyio event loop in a background thread.

    The thread starts on first use and is a daemon, so a client that is never closed
    cannot hang interpreter exit; `close()` stops and joins it. Callers may be any
    threads, including ones running an event loop of their own (Jupyter, an async web
    handler calling legacy code): they block, the private loop does the work.

    After `os.fork()` the child has no such thread (only the forking thread survives a
    fork), so the child starts a loop thread of its own on first use; the parent's loop
    and everything on it are left behind untouched (see `_per_loop`).
    """

    def __init__(self, name: str = "modelslab-fetch") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._in_flight: set[concurrent.futures.Future[object]] = set()
        self._pid = os.getpid()
        _instances.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._portal else "not started"
        return f"LoopThread({self._name!r}, {state})"

    @property
    def started(self) -> bool:
        """Whether the loop thread has been started."""
        return self._portal is not None

    @property
    def closed(self) -> bool:
        """Whether `close()` has begun."""
        return self._closed

    def run(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run `func(*args)` on the private loop and return its result, blocking meanwhile.

        If the calling thread is interrupted (Ctrl-C), the task's cancellation is
        requested before the interruption propagates. Raises `ClientClosedError` once
        `close()` has begun.
        """
        portal = self._ensure_started()
        if threading.current_thread() is self._thread:
            raise RuntimeError("the blocking client cannot be called from its own event loop")
        try:
            future: concurrent.futures.Future[T] = portal.start_task_soon(func, *args)
        except RuntimeError as exc:  # the portal stopped between the check and the call
            raise ClientClosedError(_CLOSED_MESSAGE) from exc
        self._track(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE) from None
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._untrack(future)

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Cancel calls in flight, run `cleanup` on the loop, then stop and join the thread.

        Safe to call more than once and from any thread but the loop's own.
        """
        if self._pid != os.getpid():  # the loop thread is the parent's: not ours to stop
            self.after_fork()
        if threading.current_thread() is self._thread:
            # From the loop itself (a finalizer run there): joining would deadlock.
            # Leave the daemon thread to end with the process.
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal, thread = self._portal, self._thread
            in_flight = list(self._in_flight)
        for future in in_flight:
            future.cancel()
        if portal is None or thread is None:
            return  # never started: no loop, no connections, nothing to release
        try:
            if cleanup is not None:
                portal.call(cleanup)
        finally:
            portal.call(portal.stop, True)  # cancel whatever is still running
            thread.join()

    def spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start `func(*args)` on the loop and return at once, if the loop runs.

        For places that must not block, such as a finalizer; errors are not reported.
        """
        if self._pid != os.getpid():
            self.after_fork()
        portal = self._portal
        if portal is None or self._closed or threading.current_thread() is self._thread:
            return
        try:
            portal.start_task_soon(func, *args)
        except RuntimeError:  # the portal stopped meanwhile: nothing is left to stop
            return

    def check_open(self) -> None:
        """Raise `ClientClosedError` once `close()` has begun."""
        if self._closed:
            raise ClientClosedError(_CLOSED_MESSAGE)

    def after_fork(self) -> None:
        """In a forked child: forget the parent's loop thread, which does not exist here.

        A lock held by another thread of the parent at the fork would stay held forever
        in the child: the child takes a new one. The portal (and through it the parent's
        loop) is kept alive, untouched: stopping it would wait forever for a thread that
        is not there, and its finalizers would close the parent's connections.
        """
        self._lock = threading.Lock()
        if self._portal is not None:
            leave_behind(self._portal, self._thread, self._in_flight)
        self._portal = None
        self._thread = None
        self._in_flight = set()
        self._pid = os.getpid()

    def _ensure_started(self) -> BlockingPortal:
        if self._pid != os.getpid():  # a fork the at-fork hook did not see (a C extension)
            self.after_fork()
        with self._lock:
            if self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE)
            if self._portal is None:
                ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
                thread = threading.Thread(
                    target=self._serve, args=(ready,), name=self._name, daemon=True
                )
                thread.start()
                self._portal = ready.result()
                self._thread = thread
            return self._portal

    @staticmethod
    def _serve(ready: concurrent.futures.Future[BlockingPortal]) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # pragma: no cover - only if the loop cannot start
            if not ready.done():
                ready.set_exception(exc)
            raise

    def _track(self, future: concurrent.futures.Future[T]) -> None:
        with self._lock:
            self._in_flight.add(future)  # type: ignore[arg-type]

    def _untrack(self, future: concurrent.futures.Future[T]) -> None:
        with self._lock:
            self._in_flight.discard(future)


_instances: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs only in a forked child
    for loop_thread in list(_instances):
        loop_thread.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
