"""Backend-neutral test helpers: the both-backends `anyio_backend`, leftover tasks, batches.

A module runs its async tests on asyncio and trio with `anyio_backend = both_backends`.
The fixture lives here, not in conftest.py, because a fixture in conftest.py would apply
to every module under its own name.
"""

from __future__ import annotations

from typing import TypeVar

import anyio
import anyio.lowlevel
import pytest

from modelslab_fetch import Batch, Failure, FetchResult, Success

R = TypeVar("R", bound=FetchResult)


@pytest.fixture(
    scope="module",
    params=["asyncio", "trio"],
)
def both_backends(request: pytest.FixtureRequest) -> str:
    """Runs the module's async tests on asyncio and then on trio."""
    backend: str = request.param
    return backend


# Tasks that are the test runner's, not the test's: anyio's asyncio runner awaits the test
# from a task of its own, and trio keeps its init task and a system task for thread calls.
_RUNNER_TASKS = frozenset(
    {
        "TestRunner._call_in_runner_task",
        "Runner.init",
        "EntryQueue.task",
    }
)


def leftover_tasks() -> list[anyio.TaskInfo]:
    """The tasks running besides the current test's own task and the test runner's."""
    me = anyio.get_current_task()
    return [
        task
        for task in anyio.get_running_tasks()
        if task.id != me.id and getattr(task.coro, "__qualname__", None) not in _RUNNER_TASKS
    ]


async def only_this_task_left() -> bool:
    """Give cancelled tasks a bounded number of scheduler passes to finish unwinding."""
    for _ in range(200):
        if not leftover_tasks():
            return True
        await anyio.lowlevel.checkpoint()
    return False


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
"""For a test of a bare `async for` over a batch (no `async with`): only asyncio runs a
batch's work in a task outside any task group; on trio the batch asks for `async with`."""


async def collect(batch: Batch[R]) -> list[Success[R] | Failure[R]]:
    """Every outcome of `batch`, in the structured form (`async with`) every backend runs."""
    async with batch:
        return [outcome async for outcome in batch]
