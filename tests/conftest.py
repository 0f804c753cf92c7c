"""Shared fixtures: a fake clock, a respx router over the ModelsLab base URL, clients.

Async tests and fixtures run under anyio's pytest plugin (shipped with anyio): every
coroutine test is marked `anyio` here, so test modules need no marker, and runs on
asyncio unless its module says `anyio_backend = both_backends` (tests/backends.py).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, PollPolicy, _logging

# For every test module: the loopback servers' fixtures (hostile, tls_ca, recording_proxy),
# the bare HTTP backends (backend) and a real redis-server (redis_server); pytester runs a
# user's project in a subprocess (tests/test_pytest_plugin.py).
pytest_plugins = ["tests.loopback", "tests.backends", "tests.redis_server", "pytester"]


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Marks every coroutine test `anyio`, and gives it the `anyio_backend` fixture.

    anyio's own plugin would do it only for tests already marked (its "auto" mode is newer
    than the anyio we support), so this one hook stands for a marker on every async test.
    """
    if not (isinstance(collector, pytest.Module | pytest.Class) and callable(obj)):
        return
    if not collector.istestfunction(obj, name):
        return
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)
    if inspect.iscoroutinefunction(inner):
        pytest.mark.anyio(obj)
        pytest.mark.usefixtures("anyio_backend")(obj)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio unless their module runs them on both backends."""
    return "asyncio"


API_KEY = "sk-test-7f3a9c1e-THE-SECRET-KEY"
BASE_URL = "https://modelslab.com/api"
IMAGES_URL = f"{BASE_URL}/v6/images/fetch"
SUPER_RESOLUTION_URL = f"{BASE_URL}/v1/enterprise/super_resolution/fetch/{{id}}"


class FakeClock:
    """A clock whose time moves only when something sleeps on it; it records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.start = start
        self.sleeps: list[float] = []
        self._waking: list[float] = []  # the wake-up times of the sleepers not yet woken

    def now(self) -> float:
        return self.time

    @property
    def elapsed(self) -> float:
        return self.time - self.start

    async def sleep(self, seconds: float) -> None:
        # Concurrent sleepers share the time line: each moves the clock to its own wake-up
        # time at most, so eight tasks sleeping 5 s together take 5 s, not 40.
        assert seconds >= 0, f"negative sleep {seconds}"
        wake = self.time + seconds
        if seconds > 0:
            self.sleeps.append(seconds)
        self._waking.append(wake)
        try:
            await anyio.lowlevel.checkpoint()
            # Sleepers wake in the order of their wake-up times, whatever order the event
            # loop runs them in (trio's is not first-come): time never jumps past a sleeper
            # that is due earlier. Each of those is runnable, so this wait is short.
            while min(self._waking) < wake:
                await anyio.lowlevel.checkpoint()
        finally:
            self._waking.remove(wake)
        self.time = max(self.time, wake)


def echo_success(request: httpx.Request) -> httpx.Response:
    """A respx side effect: every id asked about has succeeded, with one output URL."""
    request_id = json.loads(request.content)["request_id"]
    return httpx.Response(200, json={"status": "success", "id": request_id, "output": ["u"]})


async def never_answer(request: httpx.Request) -> httpx.Response:
    """A respx side effect for a server that takes the request and never answers."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


# Polls exactly at the server's eta, so schedules in tests read as plain numbers.
AT_ETA = PollPolicy(eta_factor=1.0, eta_offset=0.0, min_interval=0.5)


@pytest.fixture
async def client(clock: FakeClock, router: respx.MockRouter) -> AsyncIterator[AsyncModelsLab]:
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=BASE_URL, clock=clock, poll_policy=AT_ETA
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key, base URL or webhook from the environment."""
    for name in (
        "MODELSLAB_API_KEY",
        "MODELSLAB_BASE_URL",
        "MODELSLAB_WEBHOOK_URL",
        "MODELSLAB_WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _logged_once_memories_fresh() -> Iterator[None]:
    """Each test starts with the library's "logged once per process" memories empty.

    A test that runs twice in one process (on asyncio, then on trio) would otherwise find
    its warning already given by the first run, and see none.
    """
    saved = dict(_logging._said)
    _logging._said.clear()
    yield
    _logging._said.clear()
    _logging._said.update(saved)


@pytest.fixture(autouse=True)
def _library_logger_restored() -> Iterator[None]:
    """The CLI's `main` sets the library logger's level and handler for the process; undo it.

    Without this, a test that runs the CLI with --verbose leaves the logger at INFO, and a
    later test that captures the library's DEBUG records sees none.
    """
    logger = logging.getLogger("modelslab_fetch")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


BACKENDS = ["aiohttp", "httpx"]
"""The two HTTP backends: the default (aiohttp), and httpx via `http_client=`."""


@asynccontextmanager
async def client_on(backend: str, **options: Any) -> AsyncIterator[AsyncModelsLab]:
    """An `AsyncModelsLab` on the given backend, closed (with its httpx client) at the end."""
    async with (
        httpx.AsyncClient() as http_client,
        AsyncModelsLab(
            http_client=http_client if backend == "httpx" else None, **options
        ) as client,
    ):
        yield client


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never go through a developer's proxy: it would (rightly) make httpx refuse a
    plain-http loopback server. A test that wants a proxy names its own."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


class Capture(logging.Handler):
    """Keeps every record, formatted with its traceback, as a handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def logs() -> Iterator[Capture]:
    """Every record of every logger at DEBUG, whatever an earlier test (the CLI's --verbose)
    left behind, as `logs.lines`."""
    root = logging.getLogger()
    names = ["", "modelslab_fetch", "httpx", "httpcore"]
    levels = {name: logging.getLogger(name).level for name in names}
    capture = Capture()
    root.addHandler(capture)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
