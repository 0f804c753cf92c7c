"""Shared fixtures: a fake clock, a respx router over the ModelsLab base URL, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, PollPolicy

# The hostile servers' fixtures (hostile, tls_ca, recording_proxy), for every test module.
pytest_plugins = ["tests.hostile_servers"]

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
        await anyio.lowlevel.checkpoint()
        self.time = max(self.time, wake)


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
    """Tests never pick up a developer's real key or base URL from the environment."""
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    monkeypatch.delenv("MODELSLAB_BASE_URL", raising=False)


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
