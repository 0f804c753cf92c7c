"""Test helpers for the two kinds of backend: event loops, and the SDK's HTTP libraries.

Event loops: a module runs its async tests on asyncio and trio with
`anyio_backend = both_backends` (the fixture lives here, not in conftest.py, because an
`anyio_backend` fixture in conftest.py would apply to every module); `asyncio_only` marks
one test of such a module; `leftover_tasks`, `only_this_task_left`, `collect`.

HTTP libraries: the `backend` fixture (registered for every module by tests/conftest.py)
is each of the SDK's two HTTP backends, aiohttp and httpx, used bare; `post` sends one
request through it to a loopback server; `result` is a successful `FetchResult` with
the given output URLs, to download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
import anyio.lowlevel
import httpx
import pytest

from modelslab_fetch import Batch, Failure, FetchResult, Success
from modelslab_fetch._http._backends._aiohttp import AiohttpBackend
from modelslab_fetch._http._backends._contract import Backend
from modelslab_fetch._http._backends._httpx import HttpxBackend
from tests.loopback import LoopbackServer

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


# ---------------------------------------------------------------------- HTTP backends

TIMEOUT = 1.0
"""The timeout `post` gives a request unless told otherwise."""


@pytest.fixture(params=["aiohttp", "httpx"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each of the SDK's HTTP backends, bare (no client around it)."""
    made: AiohttpBackend | HttpxBackend
    if request.param == "aiohttp":
        made = AiohttpBackend(max_connections=4)
    else:
        made = HttpxBackend(httpx.AsyncClient(), owned=True)
    yield made
    await made.aclose()


async def post(backend: Backend, server: LoopbackServer, timeout: float = TIMEOUT) -> object:
    """One fetch's POST through `backend` to `server`."""
    return await backend.post(
        server.url("/api/v6/images/fetch/1"), b"{}", {}, httpx.Timeout(timeout)
    )


def result(*urls: str) -> FetchResult:
    """A successful result whose outputs are `urls`."""
    body = {"status": "success", "id": "9", "output": list(urls)}
    return FetchResult.from_body(body, request_id="9")
