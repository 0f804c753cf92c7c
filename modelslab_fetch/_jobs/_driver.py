"""A batch's driver: runs the batch's work in a task group or detached, and stops it."""

from __future__ import annotations

import sys
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

if sys.version_info < (3, 11):  # pragma: no cover - the builtin arrived in 3.11
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["BatchDriver"]


class _Drivable(Protocol):
    async def drive(self) -> None:
        """Run the work until it has no more to do."""


class BatchDriver:
    """Runs a batch's work, in a task group the batch owns or detached, and stops it.

    Whatever the work raises (a bug in the input iterable or a callback: the work
    itself never raises, its errors are outcomes) is kept here, to be raised where the
    consumer reads the end of the outcomes, never left for the event loop to log.
    """

    def __init__(self, work: _Drivable) -> None:
        self._work = work
        self._scope: anyio.CancelScope | None = None
        self._finished: anyio.Event | None = None
        self._detached: Any = None
        self._failure: BaseException | None = None
        self._stop_requested = False

    def __repr__(self) -> str:
        return f"BatchDriver({self.state})"

    @property
    def started(self) -> bool:
        """Whether the work has been started."""
        return self._finished is not None

    @property
    def state(self) -> str:
        """One of: not started, running, finished."""
        if self._finished is None:
            return "not started"
        return "finished" if self._finished.is_set() else "running"

    def start_in(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run the work in `task_group` (the structured form)."""
        self._finished = anyio.Event()
        task_group.start_soon(self._run)

    def start_detached(self) -> None:
        """Run the work in a task of its own, outside any task group.

        An async iterator cannot hold a task group open across its yields; an event
        loop that can start a task detached from any group (the standard library's)
        lets a bare `async for` work all the same. The task holds only the work, never
        the batch, so dropping the batch is seen at once, and it is always stopped by
        aclose(), the end of an `async with`, or the batch being dropped.
        """
        create_task = getattr(anyio.lowlevel.current_token().native_token, "create_task", None)
        if create_task is None:
            raise RuntimeError(
                "on this event loop (trio) a batch's work needs a task group it owns: use "
                "`async with client.images.wait_many(ids) as outcomes: async for outcome "
                "in outcomes: ...` (the same for fetch_many and wait_for_many)"
            )
        self._finished = anyio.Event()
        self._detached = create_task(self._run())

    async def _run(self) -> None:
        assert self._finished is not None  # noqa: S101 - set by whoever started it
        try:
            with anyio.CancelScope() as self._scope:
                if self._stop_requested:  # stopped before it had begun
                    self._scope.cancel()
                await self._work.drive()
        except Exception as exc:
            self._failure = exc
        finally:
            self._finished.set()

    async def stop(self) -> None:
        """Cancel the work's work and wait until it has stopped."""
        self.stop_soon()
        assert self._finished is not None  # noqa: S101 - only called once started
        # Not shielded: the work is told to stop either way, and a cancellation of the
        # caller must go on through rather than wait here.
        await self._finished.wait()

    def stop_soon(self) -> None:
        """Cancel the work's work without waiting (for places that cannot await)."""
        # A task cancelled before its first step never runs its `finally`: so the run is
        # asked to stop, and stops itself, whether it has begun or not.
        self._stop_requested = True
        if _on_the_loop_of(self._detached):
            self._cancel()
        else:  # dropped in another thread: ask the loop's own thread to cancel
            loop = self._detached.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def raise_failure(self) -> None:
        """Raise what the work failed with, once it has finished; nothing if it did not."""
        assert self._finished is not None  # noqa: S101 - the outcomes end only once started
        await self._finished.wait()
        failure = self._failure
        if isinstance(failure, BaseExceptionGroup) and len(failure.exceptions) == 1:
            # Our own work never raises: what is left is a bug in the input iterable or
            # the progress callback; show it as it was raised.
            raise failure.exceptions[0] from None
        if failure is not None:
            raise failure


def _on_the_loop_of(task: Any) -> bool:
    """Whether we run on `task`'s event loop now (True for the task-group form)."""
    if task is None:
        return True
    try:
        current = anyio.lowlevel.current_token().native_token
    except RuntimeError:  # no event loop in this thread: a garbage collector's call
        return False
    return bool(current is task.get_loop())
