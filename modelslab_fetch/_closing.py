"""Ending calls: on `close()` (also by `with`), at a batch group's stop, or at a deadline."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._errors import ClientClosedError, ModelsLabError
from ._per_loop import running_asyncio_loop

__all__ = [
    "CLOSED_MESSAGE",
    "STEP_DEADLINES",
    "CallGroup",
    "CallScope",
    "CallsInFlight",
    "ClosesOnAsyncExit",
    "ClosesOnExit",
    "refuse_if_stopped",
    "step_deadline",
]

CLOSED_MESSAGE = "this client is closed; create a new one"
"""What every call on a closed client raises `ClientClosedError` with."""

_S = TypeVar("_S", bound="ClosesOnExit")
_A = TypeVar("_A", bound="ClosesOnAsyncExit")


class ClosesOnExit:
    """A `with` block ends by calling `close()`."""

    def close(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ClosesOnAsyncExit:
    """An `async with` block ends by awaiting `aclose()`."""

    async def aclose(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class CallsInFlight:
    """The calls of one client (and its `with_options` copies) in flight, ended by closing it.

    Every public call runs inside `calls.scope(request_id)`; `close()` marks the client
    closed and cancels those scopes, so a `wait()` asleep until its next poll ends at
    once with `ClientClosedError` instead of running on for up to 30 s. Calls running on
    another event loop (a client used from two threads' loops) end at their next request.
    """

    __slots__ = ("_scopes", "closed")

    def __init__(self) -> None:
        self.closed = False
        self._scopes: dict[_Scope, object] = {}  # each scope's event loop

    def __repr__(self) -> str:
        return f"CallsInFlight({len(self._scopes)} in flight, closed={self.closed})"

    def scope(self, request_id: str | None = None, *, shields: bool = False) -> CallScope:
        """A `with` block for one call: refused once closed, ended by `close()`.

        `shields`: the call runs sections shielded from cancellation (anyio's
        `CancelScope(shield=True)`), which only an anyio scope respects; see `_TaskScope`.
        """
        return CallScope(self, request_id, shields)

    def check_open(self, request_id: str | None = None) -> None:
        """Raise `ClientClosedError` once the client is closed."""
        if self.closed:
            raise ClientClosedError(CLOSED_MESSAGE, request_id=request_id)

    def close(self) -> None:
        """Mark the client closed, and end its calls in flight on the running event loop."""
        self.closed = True
        here = _loop_here()
        for scope, loop in list(self._scopes.items()):
            if loop == here:
                scope.cancel()


class CallGroup:
    """Calls that stop together, as a batch does at an account-level error.

    `stop(error)` ends each call in flight, and refuses each one to come, with `error`
    named for its own id. Work joins the group with `join(request_id)`; each call it
    makes then belongs to it, and its own scope is the one cancelled: one cancel scope
    per call, not two.
    """

    __slots__ = ("_scopes", "error")

    def __init__(self) -> None:
        self.error: ModelsLabError | None = None
        self._scopes: set[_Scope] = set()

    def join(self, request_id: str) -> Token[_Joined | None]:
        """Make the calls of the running context members, about `request_id`; see `leave`."""
        if self.error is not None:
            raise self.error.for_request(request_id)
        return _joined.set((self, request_id, _task_here()))

    @staticmethod
    def leave(token: Token[_Joined | None]) -> None:
        """Undo the `join` that returned `token`."""
        _joined.reset(token)

    def stop(self, error: ModelsLabError) -> None:
        """End the calls in flight and refuse the others, with the first `error` given."""
        if self.error is None:
            self.error = error
        for scope in list(self._scopes):
            scope.cancel()


# The group, the id the work is about, and the task that joined: tasks started from
# the work copy the context, but their calls (your own task group's, an `on_update`
# spawning work of its own) are not the batch's. The work's own subtasks are still
# ended by its call's scope, which encloses them.
_Joined = tuple[CallGroup, str, object]
_joined: ContextVar[_Joined | None] = ContextVar("modelslab_fetch_call_group", default=None)


def _task_here() -> object:
    # asyncio's own call where an asyncio task runs; under trio (a guest of an asyncio
    # loop too, which runs no asyncio task), trio's task, through anyio.
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop in this thread
        task = None
    return task if task is not None else anyio.get_current_task().id


def refuse_if_stopped() -> None:
    """Raise the group's error if the running context's group has stopped.

    Traffic control asks it once a request is admitted, right before it is sent: a
    request granted its slot in the instant its group stopped is not sent.
    """
    joined = _joined.get()
    # The task is looked up only once the group has stopped (rarely): same answer.
    if joined is not None and joined[0].error is not None and joined[2] == _task_here():
        raise joined[0].error.for_request(joined[1])


def _loop_here() -> object:
    # The running event loop: asyncio's own call where it runs (a tenth of the cost of
    # anyio's token, and this runs on every call), anyio's token elsewhere (trio).
    return running_asyncio_loop() or anyio.lowlevel.current_token().native_token


# asyncio's tasks count cancellation requests (`cancelling()`) from Python 3.11 on: what
# `_TaskScope` needs to tell its own cancellation from anyone else's.
_NATIVE = sys.version_info >= (3, 11)


class _TaskScope:
    """A cancel scope of asyncio's own for one call: a third of the cost of anyio's.

    It cancels its task once (as `asyncio.timeout` does) where anyio's scope cancels it
    again at every await until the scope ends, and it cannot see anyio's shields; so it
    is used only by calls that run no shielded section (httpx's pool hands connections
    back in one: only calls through the aiohttp backend qualify) and swallow no
    cancellation. Inside it, anyio's scopes (a task group, `move_on_after`) work as ever:
    a cancellation that is not theirs passes through them, and one of theirs that lands
    in the same loop turn as ours leaves the count `__exit__` reads above its mark.
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_delivered",
        "_loop",
        "_task",
        "cancel_called",
        "expired",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        # Any: cancelling() and uncancel() are Python 3.11's, and mypy reads for 3.10.
        self._task: Any = task
        self._deadline: _Deadline | None = None
        self._delivered = False
        self.cancel_called = False
        self.expired = False  # set by __exit__: whether it swallowed its own cancellation

    def __enter__(self) -> _TaskScope:
        self._cancelling = self._task.cancelling()
        return self

    @property
    def deadline(self) -> float:
        """When (on the loop's clock) the scope cancels itself; `math.inf`: never."""
        entry = self._deadline
        return math.inf if entry is None else entry[0]

    @deadline.setter
    def deadline(self, when: float) -> None:
        if self._deadline is not None:
            _drop_deadline(self._loop, self._deadline)
            self._deadline = None
        if when != math.inf and not self.cancel_called:
            self._deadline = _deadlines_of(self._loop).add(self._loop, when, self)

    def cancel(self) -> None:
        """Cancel the task once, at its next await inside the scope."""
        if self.cancel_called:
            return
        self.cancel_called = True
        if self._deadline is not None:
            _drop_deadline(self._loop, self._deadline)
            self._deadline = None
        if asyncio.current_task(self._loop) is self._task:
            # Called from within the call itself: delivered once it awaits, as anyio does.
            # Cancelled now, a call ending before its next await would leave the
            # cancellation pending for whatever the task awaits after the scope.
            self._loop.call_soon(self._deliver)
        else:
            self._deliver()

    def _deliver(self) -> None:
        if self.cancel_called and not self._delivered and self._task is not None:
            self._delivered = True
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._deadline is not None:
            _drop_deadline(self._loop, self._deadline)
            self._deadline = None
        task, self._task = self._task, None
        if not self._delivered:
            return False
        # Ours was one request; more than our mark left means someone else's came too
        # (an outer scope, `task.cancel()`): theirs goes on.
        if task.uncancel() > self._cancelling:
            return False
        self.expired = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        return self.expired


_Scope = anyio.CancelScope | _TaskScope


# A deadline: [when (the loop's time), order of making, the scope, or None once dropped].
_Deadline = list[Any]
_made = itertools.count()


class _Deadlines:
    """The deadlines of one loop's calls, kept in a heap of our own under one timer.

    An asyncio timer per call cost as much as the rest of its scope: its handle is made
    in Python, and ordered in the loop's heap by a Python `__lt__`. Here a deadline is a
    list in a heap ordered in C, and the one timer moves only when a deadline earlier
    than all others comes (the waits of a batch share one timeout: almost never). A
    dropped deadline stays in the heap until it surfaces, or until dropped ones are
    most of it; the loop's entry goes when it holds none that count.
    """

    __slots__ = ("_heap", "_live", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[_Deadline] = []
        self._live = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when `_timer` fires; inf: there is none

    def add(self, loop: asyncio.AbstractEventLoop, when: float, scope: _TaskScope) -> _Deadline:
        """Cancel `scope` at `when` on `loop`'s clock; the entry returned drops it."""
        entry = [when, next(_made), scope]
        heapq.heappush(self._heap, entry)
        self._live += 1
        if when < self._timer_at:
            self._set_timer(loop, when)
        return entry

    def _set_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at = when

    def drop(self, loop: asyncio.AbstractEventLoop, entry: _Deadline) -> None:
        """Forget `entry` (its scope ended, or moved its deadline)."""
        if entry[2] is None:  # passed already
            return
        entry[2] = None
        self._live -= 1
        if not self._live:
            self._forget(loop)
        elif len(self._heap) > 4 * self._live + 64:
            # Mostly dropped ones: a batch's thousands of finished waits, each 600 s
            # from passing. Kept, they would grow the heap by every wait made.
            self._heap = [entry for entry in self._heap if entry[2] is not None]
            heapq.heapify(self._heap)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        heap, now = self._heap, loop.time()
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            entry = heapq.heappop(heap)
            scope = entry[2]
            if scope is not None:
                entry[2] = None
                self._live -= 1
                scope.cancel()
        if not self._live:
            self._forget(loop)
        elif heap:  # early by the clock's resolution, or the next one's turn
            self._set_timer(loop, heap[0][0])

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        # Nothing that counts is left: no timer, and no entry keeping the loop alive.
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        global _last_deadlines  # noqa: PLW0603 - the one-entry cache of _deadlines_of
        if _deadlines_by_loop.get(loop) is self:
            del _deadlines_by_loop[loop]
        _last_deadlines = None


_deadlines_by_loop: dict[asyncio.AbstractEventLoop, _Deadlines] = {}
_last_deadlines: tuple[asyncio.AbstractEventLoop, _Deadlines] | None = None


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last_deadlines  # noqa: PLW0603 - a cache of the loop most recently asked
    last = _last_deadlines
    if last is not None and last[0] is loop:
        return last[1]
    deadlines = _deadlines_by_loop.get(loop)
    if deadlines is None:
        deadlines = _deadlines_by_loop[loop] = _Deadlines()
    _last_deadlines = (loop, deadlines)
    return deadlines


def _drop_deadline(loop: asyncio.AbstractEventLoop, entry: _Deadline) -> None:
    deadlines = _deadlines_by_loop.get(loop)
    if deadlines is not None:
        deadlines.drop(loop, entry)


class _NoDeadline:
    """What `step_deadline(None)` gives: a step with no deadline never expires."""

    __slots__ = ()

    expired = False

    def __enter__(self) -> _NoDeadline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_DEADLINE = _NoDeadline()

STEP_DEADLINES = _NATIVE
"""Whether `step_deadline` can be used here (Python 3.11: asyncio counts cancellations)."""


def step_deadline(seconds: float | None) -> _TaskScope | _NoDeadline:
    """A deadline for one step of a call on asyncio (an HTTP attempt), `seconds` from now.

    `with step_deadline(30) as step:` cancels the step at the deadline and swallows that
    cancellation at the end of the block, which then reads `step.expired`: raise what the
    step's timeout is. Costs a heap entry (see `_Deadlines`), where aiohttp's own `total`
    timeout made an asyncio timer, a twentieth of the cost of the whole request. Only
    where `STEP_DEADLINES`.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if seconds is None or task is None:
        return _NO_DEADLINE
    scope = _TaskScope(loop, task)
    scope.deadline = loop.time() + seconds
    return scope


class CallScope:
    """One call's cancel scope: ended by `close()`, by its group's stop, or at a deadline."""

    __slots__ = ("_calls", "_joined", "_now", "_request_id", "_scope", "_shields", "_timed_out")

    _scope: _Scope
    _now: Callable[[], float]

    def __init__(self, calls: CallsInFlight, request_id: str | None, shields: bool) -> None:
        self._calls = calls
        self._request_id = request_id
        self._shields = shields
        self._timed_out: Callable[[], Exception] | None = None

    def set_deadline(
        self, seconds: float | None, timed_out: Callable[[], Exception] | None = None
    ) -> None:
        """End the call `seconds` from now, raising what `timed_out()` returns; None: never.

        `timed_out`, when given, replaces the one before, with the deadline or without.

        A wait's deadline rides on its call's scope: one cancel scope per wait, not two
        (each costs about as much as parsing a result). Clearing it once it has passed
        changes nothing: the call ends as it would have.
        """
        scope = self._scope
        if timed_out is not None:
            self._timed_out = timed_out
        if seconds is None:
            if not scope.cancel_called:
                scope.deadline = math.inf
            return
        scope.deadline = self._now() + seconds

    def on_deadline(self, timed_out: Callable[[], Exception]) -> None:
        """Raise `timed_out()` at the deadline set before, instead of what it said."""
        self._timed_out = timed_out

    def now(self) -> float:
        """The time on the clock deadlines are counted on (the event loop's)."""
        return self._now()

    def __enter__(self) -> CallScope:
        self._calls.check_open(self._request_id)
        loop = running_asyncio_loop()
        task = None if loop is None else asyncio.current_task(loop)
        joined = _joined.get()
        if joined is not None:  # the group of this task's work, if it is this task's
            here = task if loop is not None else _task_here()
            if joined[2] != here:
                joined = None
            elif joined[0].error is not None:
                raise joined[0].error.for_request(joined[1])
        self._joined = joined
        scope: _Scope
        if task is not None and _NATIVE and not self._shields:
            assert loop is not None  # noqa: S101 - a task runs on a loop
            self._now = loop.time
            self._scope = scope = _TaskScope(loop, task)
        else:
            self._now = anyio.current_time if loop is None else loop.time
            self._scope = scope = anyio.CancelScope()
        scope.__enter__()
        self._calls._scopes[scope] = loop or _loop_here()
        if joined is not None:
            joined[0]._scopes.add(scope)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._scope
        self._calls._scopes.pop(scope, None)
        joined = self._joined
        if joined is not None:
            joined[0]._scopes.discard(scope)
        swallowed = scope.__exit__(exc_type, exc, tb)
        if exc is None or not swallowed:
            return
        # Cancelled by close(), by the call's group stopping, or at its deadline.
        if not self._calls.closed and joined is not None and joined[0].error is not None:
            raise joined[0].error.for_request(joined[1]) from None
        if not self._calls.closed and self._timed_out is not None:
            error = self._timed_out()
            error.__suppress_context__ = True  # not `from None`: its own cause stands
            raise error
        raise ClientClosedError(CLOSED_MESSAGE, request_id=self._request_id) from None
