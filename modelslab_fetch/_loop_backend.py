"""The asyncio event loop under the blocking client: the one place it uses asyncio's own API.

anyio runs a loop only for the length of one `run()` (new connections on every call) or
in a thread of its own behind a portal (a thread hand-off on every call): neither lets
the calling thread run a persistent loop for the length of one call, which is what keeps
a blocking call as cheap as the async one (see `_private_loop`). So the private loop is
an asyncio loop, and what it needs from asyncio is here: make it, start a task on it,
tell whether tasks are left, cancel them, shut it. Everything run on it is anyio code.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = [
    "Handle",
    "Loop",
    "Task",
    "cancel_other_tasks",
    "has_tasks",
    "new_loop",
    "shut",
    "start_task",
]

T = TypeVar("T")

Loop = asyncio.AbstractEventLoop
"""An event loop: run by `run_forever()`, stopped by `stop()`, reached from other
threads by `call_soon_threadsafe()`."""

Task = asyncio.Task
"""A coroutine running on a `Loop`."""

Handle = asyncio.Handle
"""A callback scheduled on a `Loop`, which can be cancelled."""


def new_loop() -> Loop:
    """A new event loop (the event loop policy's: uvloop where it is installed)."""
    return asyncio.new_event_loop()


def start_task(
    loop: Loop, coroutine: Coroutine[Any, Any, T], context: contextvars.Context
) -> Task[T]:
    """Start `coroutine` as a task on `loop`, in `context` (a copy of it)."""
    return context.run(loop.create_task, coroutine)


def has_tasks(loop: Loop) -> bool:
    """Whether tasks not yet done are left on `loop` (a batch working between reads)."""
    return bool(asyncio.all_tasks(loop))


async def cancel_other_tasks() -> None:
    """On the loop: cancel every task but the running one, and wait until they are done."""
    me = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not me]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left)


def shut(loop: Loop) -> None:
    """Finish `loop`'s async generators (connection keepers) and executor, and close it."""
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
