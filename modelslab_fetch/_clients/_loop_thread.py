"""The blocking client's event loop, on one thread of its own for the client's life.

Every coroutine of the SDK runs start to end on this one thread (libraries keep per-thread
state); blocking calls from any thread hand their coroutines to it through anyio's portal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, TypeVar, cast

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._closing import CLOSED_MESSAGE
from .._errors import ClientClosedError
from .._per_loop import ForkAware, leave_behind

__all__ = ["LoopThread"]

T = TypeVar("T")
_Cleanup = Callable[[], Awaitable[None]] | None

_NESTED_MESSAGE = (
    "the blocking client cannot be called from its own event loop's thread (from an "
    "on_update or on_progress callback, say): that call would wait for itself; use the "
    "AsyncModelsLab client there, or make the call after the first one returns"
)


class LoopThread(ForkAware):
    """One client's event loop, on a thread of its own started by the first call.

    After `os.fork()` the child starts a thread of its own; the parent's loop is left alone.
    """

    def __init__(self, name: str = "modelslab-fetch") -> None:
        self._name = name
        self.closed = False  # close() has begun: calls are refused
        super().__init__()
        self.after_fork()  # the initial state: what a forked child starts from too

    def __repr__(self) -> str:
        return f"LoopThread({self._name!r}, closed={self.closed}, started={self.started})"

    @property
    def started(self) -> bool:
        """Whether the thread has been started (by the first call)."""
        return self._portal is not None

    @property
    def in_its_thread(self) -> bool:
        """Whether the calling thread is the loop's own (where no call may block)."""
        return threading.get_ident() == self._thread_id

    def check_open(self) -> None:
        """Raise `ClientClosedError` once `close()` has begun."""
        if self.closed:
            raise ClientClosedError(CLOSED_MESSAGE)

    def run(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run `func(*args)` on the loop's thread; block until it ends; return or raise.

        Ctrl-C cancels the call (and waits for it unless pressed again). A call refused or
        ended by `close()` raises `ClientClosedError`.
        """
        portal = self._portal_for_a_call()
        call = _Call(func, args)
        try:
            portal.start_task_soon(call.run)
            call.wait()
        except BaseException:
            call.cancel(portal)  # a second Ctrl-C while it ends goes on at once
            raise
        ok, value = call.outcome
        if ok:
            return cast(T, value)
        raise value

    def spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start `func(*args)` on the loop, if it runs, and return at once (for finalizers)."""
        self.check_fork()
        portal = self._portal
        if portal is None or self._shut.is_set():
            return
        start = partial(_start_quietly, portal, func, args)
        if self.in_its_thread:  # the portal would wait for this very thread
            threading.Thread(target=start).start()
        else:
            start()

    def close(self, cleanup: _Cleanup = None) -> None:
        """Run `cleanup` on the loop, cancel what is left, stop the loop, join the thread.

        Safe to call more than once, from any thread (the loop's own included).
        """
        self.check_fork()
        with self._lock:
            begun, self.closed = self.closed, True
            portal, stopper = self._portal, self._stopper
        if begun:
            self.wait_closed()
            return
        if portal is None or stopper is None:
            self._shut.set()  # never used: no thread, no connections, nothing to release
            return
        if self.in_its_thread:
            threading.Thread(target=self._shut_down, args=(portal, stopper, cleanup)).start()
        else:
            self._shut_down(portal, stopper, cleanup)

    def wait_closed(self) -> None:
        """Once `close()` has begun, wait until the thread has ended (if not this thread)."""
        if self.closed and not self.in_its_thread:
            self._shut.wait()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's loop and thread, never touching them.

        Stopping that loop would unregister the parent's sockets and close its connections.
        """
        leave_behind(getattr(self, "_portal", None), getattr(self, "_stopper", None))
        self._lock = threading.Lock()  # it may have been held by another thread at the fork
        self._portal: BlockingPortal | None = None
        self._stopper: contextlib.ExitStack | None = None  # leaving it joins the thread
        self._thread_id: int | None = None
        self._shut = threading.Event()
        super().after_fork()

    def _portal_for_a_call(self) -> BlockingPortal:
        self.check_fork()
        with self._lock:
            if self.closed:
                raise ClientClosedError(CLOSED_MESSAGE)
            if self.in_its_thread:
                raise RuntimeError(_NESTED_MESSAGE)
            if self._portal is None:
                stopper = contextlib.ExitStack()
                self._portal = stopper.enter_context(start_blocking_portal())
                self._thread_id = self._portal.call(_name_this_thread, self._name)
                self._stopper = stopper
            return self._portal

    def _shut_down(
        self, portal: BlockingPortal, stopper: contextlib.ExitStack, cleanup: _Cleanup
    ) -> None:
        try:
            if cleanup is not None:
                portal.call(cleanup)
        finally:
            with contextlib.suppress(RuntimeError):  # what is left (a batch between reads)
                portal.call(portal.stop, True)  # is cancelled
            stopper.close()  # the loop finishes its async generators; the thread ends
            self._shut.set()


def _name_this_thread(name: str) -> int:
    threading.current_thread().name = name  # what a thread dump or a debugger shows
    return threading.get_ident()


def _start_quietly(
    portal: BlockingPortal, func: Callable[..., Awaitable[object]], args: tuple[object, ...]
) -> None:
    with contextlib.suppress(RuntimeError):  # stopped meanwhile: nothing left to do
        portal.start_task_soon(_quietly, func, args)


async def _quietly(func: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> None:
    with contextlib.suppress(Exception):
        await func(*args)


class _Call(Generic[T]):
    """One blocking call: its coroutine on the loop, and the caller waiting for it."""

    def __init__(self, func: Callable[..., Awaitable[T]], args: tuple[object, ...]) -> None:
        self._func, self._args = func, args
        self.done = threading.Event()
        self._lock = threading.Lock()  # between caller and loop: has it begun, or given up?
        self._begun = self._given_up = False
        self._scope: anyio.CancelScope | None = None
        self.outcome: tuple[bool, Any] = (False, ClientClosedError(CLOSED_MESSAGE))

    async def run(self) -> None:
        """On the loop: run the coroutine unless its caller gave up; keep its outcome."""
        try:
            with anyio.CancelScope() as self._scope:
                with self._lock:
                    self._begun = not self._given_up
                if self._begun:
                    self.outcome = (True, await self._func(*self._args))
        except anyio.get_cancelled_exc_class():
            raise  # close() stopping the loop: the outcome stays ClientClosedError
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt from a callback ends this call, not the loop.
            self.outcome = (False, exc)
        finally:
            self.done.set()

    def cancel(self, portal: BlockingPortal) -> None:
        """From the caller: give up; if the coroutine began, cancel it and wait for its end."""
        with self._lock:
            self._given_up = True
            if not self._begun:
                return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: it has ended
            portal.call(lambda: self._scope.cancel() if self._scope else None)
        self.wait()

    def wait(self) -> None:
        """Block until the coroutine has ended; Ctrl-C raises meanwhile."""
        # In steps: a signal that does not wake a blocked wait is still taken within one.
        while not self.done.wait(0.1):
            pass
