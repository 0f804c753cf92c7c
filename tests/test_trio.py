"""A default client under trio, end to end over real sockets: fetch, wait, batches, downloads.

`anyio.run(main, backend="trio")` is how a trio program uses the SDK; the default backend
there is httpx (aiohttp needs the standard library's event loop).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ConfigurationError, ModelsLab
from modelslab_fetch.testing import Simulator, SimulatorApp, simulator_server

pytestmark = pytest.mark.integration


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


KEY = "trio-key"


async def test_everything_a_default_client_does_under_trio(tmp_path: Path) -> None:
    simulator = Simulator(api_key=KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        async with AsyncModelsLab(api_key=KEY, base_url=base_url) as client:
            job = simulator.queue(ready_in=0.3)
            assert (await client.images.fetch(job)).status.value == "processing"
            done = await client.images.wait(job, timeout=30)
            assert done.succeeded
            ids = simulator.queue_many(20, ready_in=(0.05, 0.3))
            async with client.images.wait_many(ids, timeout=30) as outcomes:
                collected = [outcome async for outcome in outcomes]
            assert sorted(o.request_id for o in collected) == sorted(ids)
            assert all(outcome.ok for outcome in collected)
            async with client.images.fetch_many(ids) as outcomes:
                async for _ in outcomes:
                    break  # an early break stops the rest, with no stray task or warning
            paths = await client.download(done, tmp_path)
            assert paths[0].read_bytes().startswith(b"\x89PNG")
            assert client._transport._kind == "httpx"


async def test_a_bare_async_for_under_trio_names_the_async_with_form() -> None:
    async with AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:9/api") as client:
        with pytest.raises(RuntimeError, match=r"async with client\.images\.wait_many"):
            async for _ in client.images.wait_many(["1"]):
                pass


async def test_forcing_aiohttp_under_trio_is_a_clear_error() -> None:
    async with AsyncModelsLab(
        api_key=KEY, base_url="http://127.0.0.1:9/api", http_backend="aiohttp", max_retries=0
    ) as client:
        with pytest.raises(ConfigurationError, match="cannot run under trio"):
            await client.images.fetch(1)


async def test_the_blocking_client_works_when_made_in_trio_code() -> None:
    simulator = Simulator(api_key=KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue()

        def blocking() -> bool:
            with ModelsLab(api_key=KEY, base_url=base_url) as client:
                return client.images.wait(job).succeeded

        assert await anyio.to_thread.run_sync(blocking)
        with ModelsLab(api_key=KEY, base_url=base_url) as client:  # made right here, in trio
            assert client.images.fetch(job).succeeded
