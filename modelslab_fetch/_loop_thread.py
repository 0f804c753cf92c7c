"""A private event loop in one background thread, which blocking code hands coroutines to."""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.lowlevel
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
        self._in_flight: set[_Call[Any]] = set()
        self._native: Any = None  # the running loop, where it can start a task directly
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
        call = _Call(func, args, self._native)
        self._track(call)
        try:
            if self._native is not None:
                # The cheap hand-off: straight onto the loop, one task, no portal task
                # group in between (it doubled the cost of every blocking call).
                # In a context of its own: the caller's (its sniffio marker from a trio
                # program, say) must not follow the call onto this loop.
                self._native.call_soon_threadsafe(call.start, context=contextvars.Context())
            else:
                call.future = portal.start_task_soon(func, *args)
        except RuntimeError as exc:  # the loop stopped between the check and the call
            self._untrack(call)
            raise ClientClosedError(_CLOSED_MESSAGE) from exc
        try:
            return call.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE) from None
            raise
        except BaseException:
            call.cancel()
            raise
        finally:
            self._untrack(call)

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
        for call in in_flight:
            call.cancel()
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
            leave_behind(self._portal, self._thread, self._in_flight, self._native)
        self._portal = None
        self._thread = None
        self._native = None
        self._in_flight = set()
        self._pid = os.getpid()

    def _ensure_started(self) -> BlockingPortal:
        if self._pid != os.getpid():  # a fork the at-fork hook did not see (a C extension)
            self.after_fork()
        with self._lock:
            if self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE)
            if self._portal is None:
                ready: concurrent.futures.Future[tuple[BlockingPortal, Any]]
                ready = concurrent.futures.Future()
                thread = threading.Thread(
                    target=self._serve, args=(ready,), name=self._name, daemon=True
                )
                thread.start()
                self._portal, native = ready.result()
                can_start_tasks = hasattr(native, "create_task")
                self._native = native if can_start_tasks else None
                self._thread = thread
            return self._portal

    @staticmethod
    def _serve(ready: concurrent.futures.Future[tuple[BlockingPortal, Any]]) -> None:
        # Not anyio's start_blocking_portal(): its thread is a non-daemon worker of a
        # thread pool, which interpreter exit joins, so a client never closed would hang
        # the exit; this thread is a daemon, stopped by close() or the finalizer.
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result((portal, anyio.lowlevel.current_token().native_token))
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # pragma: no cover - only if the loop cannot start
            if not ready.done():
                ready.set_exception(exc)
            raise

    def _track(self, call: _Call[Any]) -> None:
        self._in_flight.add(call)  # atomic under the GIL: no lock on every call

    def _untrack(self, call: _Call[Any]) -> None:
        self._in_flight.discard(call)


_CANCELLED = object()


class _Call(Generic[T]):
    """One blocking call: its coroutine's task on the loop, and the caller waiting for it.

    The caller waits on a bare lock, released once the outcome is settled: cheaper than a
    `concurrent.futures.Future` (a Condition, a waiter list) on every blocking call. On
    the portal path (no native loop) the portal's future is used instead.
    """

    __slots__ = ("_args", "_done", "_func", "_loop", "_outcome", "_settled", "_task", "future")

    def __init__(
        self, func: Callable[..., Awaitable[T]], args: tuple[object, ...], loop: Any
    ) -> None:
        self._func = func
        self._args = args
        self._loop = loop
        self._task: Any = None
        self._outcome: tuple[bool, Any] = (False, _CANCELLED)
        self._done = threading.Lock()
        self._done.acquire()  # released when the outcome is settled
        self._settled = threading.Lock()  # taken by whoever settles it, once
        self.future: concurrent.futures.Future[T] | None = None

    def start(self) -> None:
        """On the loop: start the task (unless the caller gave up already)."""
        if self._settled.locked():
            return
        self._task = self._loop.create_task(self._func(*self._args))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: Any) -> None:
        if task.cancelled():
            self._settle((False, _CANCELLED))
            return
        error = task.exception()
        if not self._settle((True, task.result()) if error is None else (False, error)):
            return  # nobody waits for it any more: read, so not "never retrieved"

    def _settle(self, outcome: tuple[bool, Any]) -> bool:
        if not self._settled.acquire(blocking=False):
            return False
        self._outcome = outcome
        self._done.release()
        return True

    def result(self) -> T:
        """Block until the outcome is settled; return it, or raise it."""
        if self.future is not None:
            return self.future.result()
        self._done.acquire()  # interruptible: Ctrl-C raises here
        ok, value = self._outcome
        if ok:
            return cast(T, value)
        if value is _CANCELLED:
            raise concurrent.futures.CancelledError
        raise value

    def cancel(self) -> None:
        """From any thread: give up waiting, and stop the task if it runs."""
        self._settle((False, _CANCELLED))
        if self.future is not None:
            self.future.cancel()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()


_instances: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs only in a forked child
    for loop_thread in list(_instances):
        loop_thread.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
