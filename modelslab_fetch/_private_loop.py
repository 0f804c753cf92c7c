"""The blocking client's private event loop, run by the calling thread whenever it is free.

Every blocking call runs its coroutine on one asyncio event loop that belongs to the
client: its connections, its traffic limits and its batches live there. Most calls find
that loop idle, and the calling thread then runs it itself for the length of the call:
no thread hand-off, whose two thread wake-ups cost more than the request (about 130 µs
a call on a 2-core machine). When the loop is busy (another thread's call, a batch
working between two reads) or the calling thread cannot run it (an event loop of its own
runs there: Jupyter, an async web handler calling legacy code, trio), the call is handed
to whichever thread runs the loop, and a helper thread runs the loop whenever work is
left that no caller is running.

Who runs the loop, and when, is decided here; the loop itself, an asyncio loop (why: see
`_loop_backend`), is made, given tasks and shut there.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Generic, TypeVar, cast

import sniffio

from . import _loop_backend
from ._errors import ClientClosedError
from ._loop_backend import Handle, Loop, Task
from ._per_loop import leave_behind

raw_signal: Any
try:  # signal's own functions, without the enum conversions that make each call ~4 µs
    import _signal as raw_signal  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover - not CPython
    raw_signal = signal

__all__ = ["PrivateLoop"]

T = TypeVar("T")

_CLOSED_MESSAGE = "this client is closed; create a new one"
_NESTED_MESSAGE = (
    "the blocking client cannot be called from inside one of its own calls (an on_update "
    "callback, say): that call is running the client's event loop in this thread; use "
    "the AsyncModelsLab client there, or make the call after the first one returns"
)
# How often a helper running the loop looks whether any work is left (finished calls
# also look at once): the helper hands the loop back to callers when none is.
_IDLE_CHECK_SECONDS = 0.05


class PrivateLoop:
    """One client's asyncio event loop, run by its callers in turn or by a helper thread.

    Nothing is started before the first call. Calls may come from any threads at once,
    including ones running an event loop of their own. `close()` cancels what runs, runs a
    cleanup, shuts the loop and joins the helper, if one was started. After `os.fork()`
    the child starts a loop of its own; the parent's is left untouched (see `_per_loop`).
    """

    def __init__(self, name: str = "modelslab-fetch") -> None:
        self._name = name
        self._set_up_state()
        _instances.add(self)

    def _set_up_state(self) -> None:
        # Reentrant: a finalizer run by the garbage collector (a batch dropped mid-way)
        # may spawn work from a thread that is in the middle of a call here.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._loop: Loop | None = None
        self._runner: int | None = None  # the thread running the loop right now
        self._helper: threading.Thread | None = None
        self._helper_wanted = False
        self._idle_check: Handle | None = None
        self._closed = False
        self._shut_wanted = False  # the helper is to shut the loop once no work is left
        self._shut = False  # the loop is closed: nothing runs on it any more
        self._in_flight: set[_Call[Any]] = set()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._loop else "not started"
        return f"PrivateLoop({self._name!r}, {state})"

    @property
    def started(self) -> bool:
        """Whether the loop has been made (by the first call)."""
        return self._loop is not None

    @property
    def closed(self) -> bool:
        """Whether `close()` has begun."""
        return self._closed

    def run(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run `func(*args)` on the loop and return its result, blocking meanwhile.

        Interrupted (Ctrl-C), the call is cancelled before the interruption propagates.
        Raises `ClientClosedError` once `close()` has begun.
        """
        self._check_fork()
        call = _Call(func, args, self._call_settled)
        if self._submit(call, may_run_loop=_no_event_loop_runs_here(), waits=True):
            return self._run_loop_for(call)
        return self._wait_for(call)

    def spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start `func(*args)` on the loop and return at once, if the client is open.

        For places that must not block, such as a finalizer; errors are not reported.
        """
        self._check_fork()
        with self._lock:
            if self._closed or self._loop is None:
                return
            self._submit(_Call(func, args, self._call_settled), may_run_loop=False)

    def run_or_spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run `func(*args)` on the loop and wait for it; from inside a call, only start it.

        For finalizers, which may run anywhere: in a thread running the loop (an
        `on_update` callback dropping a client), waiting would wait for that very thread.
        Errors are not reported when it is only started.
        """
        if self._runner == threading.get_ident():
            self.spawn(func, *args)
        else:
            self.run(func, *args)

    def check_open(self) -> None:
        """Raise `ClientClosedError` once `close()` has begun."""
        if self._closed:
            raise ClientClosedError(_CLOSED_MESSAGE)

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Cancel calls in flight, run `cleanup` on the loop, shut the loop, join the helper.

        Safe to call more than once and from any thread, even from inside a call (a
        finalizer run there): then the helper finishes the work after the call returns.
        """
        self._check_fork()
        with self._lock:
            if self._closed:  # begun by another thread: done when this returns all the same
                self.wait_closed()
                return
            self._closed = True
            loop, in_flight = self._loop, list(self._in_flight)
            inside_a_call = self._runner == threading.get_ident()
        for call in in_flight:
            call.cancel()
        if loop is None:
            return  # never used: no loop, no connections, nothing to release
        last = _Call(_last_work, (cleanup,), self._call_settled)
        if inside_a_call:
            # Waiting here would wait for this very thread: the helper takes over.
            with self._lock:
                self._shut_wanted = True
                self._submit(last, may_run_loop=False, closing=True)
            return
        here = _no_event_loop_runs_here()
        try:
            if self._submit(last, may_run_loop=here, waits=True, closing=True):
                self._run_loop_for(last)
            else:
                self._wait_for(last)
        finally:
            self._shut_down(here)

    def wait_closed(self) -> None:
        """Once `close()` has begun elsewhere: wait until the loop is shut, the helper joined.

        Returns at once if it has not begun, or where waiting would wait for this thread:
        inside a call (the helper shuts the loop after the call) or in the helper.
        """
        me = threading.current_thread()
        with self._lock:
            helper = self._helper
            if not self._closed or self._loop is None or me is helper:
                return
            if self._runner == me.ident:
                return
            while not self._shut:
                self._changed.wait()
        if helper is not None:
            helper.join()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's loop, which is not this process's.

        The loop, its helper thread object and its calls are kept alive, untouched:
        closing the loop would unregister the parent's sockets, and its finalizers would
        close the parent's connections.
        """
        if self._loop is not None:
            leave_behind(self._loop, self._helper, self._in_flight)
        closed = self._closed
        self._set_up_state()
        self._closed = closed

    # -- who runs the loop ---------------------------------------------------------------

    def _submit(
        self,
        call: _Call[Any],
        *,
        may_run_loop: bool,
        waits: bool = False,
        closing: bool = False,
    ) -> bool:
        """Register `call`; True if the caller is to run the loop for it, else handed over.

        A caller that `waits` for the call must not be the thread running the loop: it
        would wait for itself.
        """
        me = threading.get_ident()
        with self._lock:
            if self._closed and not closing:
                raise ClientClosedError(_CLOSED_MESSAGE)
            if waits and self._runner == me:
                raise RuntimeError(_NESTED_MESSAGE)
            loop = self._loop
            if loop is None:
                loop = self._loop = _loop_backend.new_loop()
            call.loop = loop
            self._in_flight.add(call)
            if may_run_loop and self._runner is None:
                self._runner = me
                return True
            loop.call_soon_threadsafe(call.start)
            if self._runner is None:
                self._want_helper()
            return False

    def _run_loop_for(self, call: _Call[T]) -> T:
        """Run the loop in this thread until `call` is done; hand on any work left."""
        loop = call.loop
        assert loop is not None  # noqa: S101 - set by _submit
        try:
            task = call.start(stop_loop_when_done=True)
            if task is None:  # cancelled by close() before it began, or could not begin
                return self._wait_for(call)  # settled: raises at once
            with _CtrlCCancels(task, loop) as ctrl_c:
                try:
                    while not task.done():  # the task stops the loop as it ends; a
                        # stop left over from an earlier call ends a pass early: go on
                        loop.run_forever()
                except BaseException:  # the loop itself was interrupted: a second Ctrl-C
                    call.abandon()  # cancelled; the helper runs it to its end
                    raise
            if ctrl_c.pressed:
                raise KeyboardInterrupt
            if task.cancelled() and self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE)
            try:
                return task.result()
            except _Escaped as escaped:
                error = escaped.error
            raise error  # as it was raised: out of the except block, its context is kept
        finally:
            self._in_flight.discard(call)
            with self._lock:
                self._runner = None
                if self._work_left():
                    self._want_helper()
                self._changed.notify_all()

    def _wait_for(self, call: _Call[T]) -> T:
        """Block until the thread running the loop has finished `call`."""
        try:
            return call.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ClientClosedError(_CLOSED_MESSAGE) from None
            raise
        except BaseException:
            call.cancel()
            raise

    def _call_settled(self, call: _Call[Any]) -> None:
        self._in_flight.discard(call)  # atomic under the GIL
        if threading.get_ident() == self._runner == self._helper_ident():
            self._stop_helper_if_idle(again=False)  # on the loop, in the helper

    def _work_left(self) -> bool:
        # Calls not yet settled, or tasks (a batch working between reads) still running.
        return bool(self._in_flight) or (
            self._loop is not None and _loop_backend.has_tasks(self._loop)
        )

    def _want_helper(self) -> None:
        """Under the lock: have the helper run the loop, starting it if need be."""
        self._helper_wanted = True
        self._start_helper()
        self._changed.notify_all()

    def _start_helper(self) -> None:
        if self._helper is None:
            self._helper = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._helper.start()

    def _helper_ident(self) -> int | None:
        helper = self._helper
        return None if helper is None else helper.ident

    def _serve(self) -> None:
        """The helper thread: run the loop while work is left that no caller runs."""
        me = threading.get_ident()
        while True:
            with self._lock:
                while not self._shut and (
                    self._runner is not None or not (self._helper_wanted or self._shut_wanted)
                ):
                    self._changed.wait()
                if self._shut:
                    return
                loop = self._loop
                assert loop is not None  # noqa: S101 - made before the helper is wanted
                self._runner = me
                shut = self._shut_wanted and not self._work_left()
                self._helper_wanted = False
            if shut:
                self._shut_loop(loop)
                return
            self._idle_check = loop.call_soon(self._stop_helper_if_idle)
            try:
                loop.run_forever()
            except BaseException as exc:  # the helper must outlive it
                # Not a call's (those are caught in their task): a batch's own task or a
                # callback raised SystemExit or KeyboardInterrupt. Dying here would leave
                # every call handed over from now on waiting forever.
                loop.call_exception_handler(
                    {"message": "an error escaped the client's event loop", "exception": exc}
                )
            finally:
                if self._idle_check is not None:
                    self._idle_check.cancel()
                with self._lock:
                    self._runner = None
                    if self._work_left():
                        self._helper_wanted = True
                    self._changed.notify_all()

    def _stop_helper_if_idle(self, again: bool = True) -> None:
        """On the loop, in the helper: stop running it once no work is left."""
        with self._lock:
            loop = self._loop
            if loop is None or self._runner != self._helper_ident():
                return  # a caller runs the loop now: it hands on what is left itself
            if not self._work_left():
                loop.stop()
                return
        if again:
            self._idle_check = loop.call_later(_IDLE_CHECK_SECONDS, self._stop_helper_if_idle)

    # -- shutting down --------------------------------------------------------------------

    def _shut_down(self, here: bool) -> None:
        """After close(): shut the loop, in this thread if it can run it, else the helper's."""
        with self._lock:
            if not here:
                self._shut_wanted = True
                self._start_helper()
                self._changed.notify_all()
                while not self._shut:
                    self._changed.wait()
                helper = self._helper
            else:
                while self._runner is not None or self._helper_wanted:
                    self._changed.wait()
                self._runner = threading.get_ident()
                helper = None
        loop = self._loop
        if here and loop is not None:
            self._shut_loop(loop)
        helper = helper or self._helper
        if helper is not None and helper is not threading.current_thread():
            helper.join()

    def _shut_loop(self, loop: Loop) -> None:
        """Shut the loop (see `_loop_backend.shut`), and say so to whoever waits."""
        try:
            _loop_backend.shut(loop)
        finally:
            with self._lock:
                self._shut = True
                self._runner = None
                self._changed.notify_all()

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a fork the at-fork hook did not see (a C extension)
            self.after_fork()


async def _last_work(cleanup: Callable[[], Awaitable[None]] | None) -> None:
    """The last call on a closing loop: the cleanup, then every task left is cancelled."""
    try:
        if cleanup is not None:
            await cleanup()
    finally:
        await _loop_backend.cancel_other_tasks()


class _Escaped(Exception):  # not an error of its own: a carrier
    """SystemExit or KeyboardInterrupt raised by a call (its `on_update`, say), carried.

    asyncio lets those two escape the task into whatever thread runs the loop: a helper
    thread would die of it (and every call handed over after would hang), and a caller
    running the loop for a call of its own would get, and be interrupted by, another
    thread's exit. Carried as an ordinary error, it ends only its own call, whose caller
    raises it as it was.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


async def _contained(awaitable: Awaitable[T]) -> T:
    """`awaitable`'s outcome, with SystemExit and KeyboardInterrupt carried (`_Escaped`)."""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


async def _then_stop(awaitable: Awaitable[T], loop: Loop) -> T:
    """`awaitable`'s outcome, stopping `loop` in the same step (and carried as above).

    A caller running the loop for one call so gets it back without one more pass of the
    loop (`run_until_complete()` stops it from a done callback, a pass later: ~30 µs).
    """
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None
    finally:
        loop.stop()


def _no_event_loop_runs_here() -> bool:
    """Whether this thread may run the private loop: no async library runs in it now."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return True
    return False


def _context_for_the_loop() -> contextvars.Context:
    """The caller's context variables, minus sniffio's marker of the caller's library."""
    context = contextvars.copy_context()
    if context.get(sniffio.current_async_library_cvar) is not None:
        context.run(sniffio.current_async_library_cvar.set, None)
    return context


class _CtrlCCancels:
    """While the main thread runs the loop, Ctrl-C cancels the call.

    Otherwise KeyboardInterrupt could land anywhere in the loop's machinery (a connection
    pool left mid-update). A second Ctrl-C raises at once. As `asyncio.run()` does, and
    only where Python's default handler is set.
    """

    def __init__(self, task: Task[Any], loop: Loop) -> None:
        self._task = task
        self._loop = loop
        self._previous: Any = None
        self.pressed = 0

    def __enter__(self) -> _CtrlCCancels:
        if (
            threading.current_thread() is threading.main_thread()
            and raw_signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = raw_signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None and raw_signal.getsignal(signal.SIGINT) == self._on_ctrl_c:
            raw_signal.signal(signal.SIGINT, self._previous)

    def _on_ctrl_c(self, signum: int, frame: FrameType | None) -> None:
        self.pressed += 1
        if self.pressed == 1 and not self._task.done():
            # Cancelled before its first step, the task would never run the code that
            # stops the loop: its end stops it too. A spare stop only ends some later run
            # of the loop early, and every runner runs it again while it has work.
            self._task.add_done_callback(lambda _: self._loop.stop())
            self._task.cancel()
            self._loop.call_soon_threadsafe(lambda: None)  # wake a loop asleep in select()
            return
        raise KeyboardInterrupt


_CANCELLED = object()


class _Call(Generic[T]):
    """One call: its coroutine's task on the loop, and the caller that may wait for it.

    A caller waiting (the hand-off) waits on a bare lock, released once the outcome is
    settled: cheaper than a `concurrent.futures.Future` (a Condition, a waiter list).
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_context",
        "_done",
        "_func",
        "_on_settled",
        "_outcome",
        "_settled",
        "loop",
        "task",
    )

    def __init__(
        self,
        func: Callable[..., Awaitable[T]],
        args: tuple[object, ...],
        on_settled: Callable[[_Call[Any]], None],
    ) -> None:
        self._func = func
        self._args = args
        self._on_settled = on_settled
        # The caller's context variables follow the call (its logging filters see them).
        self._context = _context_for_the_loop()
        self.loop: Loop | None = None
        self.task: Task[T] | None = None
        self._outcome: tuple[bool, Any] = (False, _CANCELLED)
        self._done = threading.Lock()
        self._done.acquire()  # released when the outcome is settled
        self._settled = threading.Lock()  # taken by whoever settles it, once

    def start(self, *, stop_loop_when_done: bool = False) -> Task[T] | None:
        """On the loop's thread: start the task, unless the call is settled already.

        Settled, or settled now with the error of calling `func`, it returns None. With
        `stop_loop_when_done` (a caller running the loop for this call alone), the task
        stops the loop in its own last step; its outcome is then read from the task.
        """
        if self._settled.locked():
            return None
        loop = self.loop
        assert loop is not None  # noqa: S101 - set by _submit
        try:
            coroutine = cast(Any, self._func(*self._args))
        except BaseException as exc:  # bad arguments: the caller hears of it, nothing hangs
            self._settle((False, exc))
            return None
        # SystemExit and KeyboardInterrupt end the call, not the loop (see _Escaped).
        coroutine = _then_stop(coroutine, loop) if stop_loop_when_done else _contained(coroutine)
        task: Task[T] = _loop_backend.start_task(loop, coroutine, self._context)
        self.task = task
        if self._settled.locked():  # cancel() came meanwhile, and found no task to stop
            loop.call_soon(task.cancel)  # after its first step: the coroutine is awaited
        if not stop_loop_when_done:
            task.add_done_callback(self._finished)
        return task

    def _finished(self, task: Task[T]) -> None:
        if task.cancelled():
            self._settle((False, _CANCELLED))
            return
        error = task.exception()  # read, so never "exception was never retrieved"
        if isinstance(error, _Escaped):
            error = error.error
        self._settle((True, task.result()) if error is None else (False, error))

    def _settle(self, outcome: tuple[bool, Any]) -> None:
        if not self._settled.acquire(blocking=False):
            return
        self._outcome = outcome
        self._done.release()
        self._on_settled(self)

    def result(self) -> T:
        """Block until the outcome is settled; return it, or raise it."""
        self._done.acquire()  # interruptible: Ctrl-C raises here
        ok, value = self._outcome
        if ok:
            return cast(T, value)
        if value is _CANCELLED:
            raise concurrent.futures.CancelledError
        raise value

    def abandon(self) -> None:
        """Cancel the call, interrupted in the thread that ran the loop for it.

        Its outcome is read when it ends (no "exception was never retrieved").
        """
        task = self.task
        if task is not None and not task.done():
            task.add_done_callback(self._finished)
        elif task is not None and not task.cancelled():
            task.exception()  # ended by the interruption itself: read, so never "not retrieved"
        self.cancel()

    def cancel(self) -> None:
        """From any thread: give up waiting, and stop the task if it runs."""
        self._settle((False, _CANCELLED))
        task, loop = self.task, self.loop
        if task is not None and loop is not None and not task.done() and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)


_instances: weakref.WeakSet[PrivateLoop] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs only in a forked child
    for private_loop in list(_instances):
        private_loop.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
