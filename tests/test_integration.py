"""End to end over real sockets against a scripted server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelslab_fetch import (
    AsyncModelsLab,
    ModelsLab,
    PollPolicy,
    Status,
)
from tests.backends import only_this_task_left
from tests.conftest import API_KEY
from tests.loopback import Reply, ScriptedServer, scripted_server

pytestmark = pytest.mark.integration

FAST = PollPolicy(min_interval=0.01, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def done(request_id: str) -> Reply:
    return Reply(
        200, {"status": "success", "id": int(request_id), "output": [f"https://x/{request_id}.png"]}
    )


async def test_both_endpoints_over_real_sockets(server: ScriptedServer) -> None:
    server.script("101", done("101"))
    server.script("202", done("202"))
    async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url) as client:
        assert (await client.images.fetch(101)).output == ["https://x/101.png"]
        assert (await client.enterprise.super_resolution.fetch("202")).id == "202"
    assert [(s.path, s.body) for s in server.seen] == [
        ("/api/v6/images/fetch", {"key": API_KEY, "request_id": "101"}),
        ("/api/v1/enterprise/super_resolution/fetch/202", {"key": API_KEY}),
    ]


async def test_wait_polls_until_success(server: ScriptedServer) -> None:
    server.script(
        "7",
        Reply(200, {"status": "processing", "eta": "0.02", "id": "7", "messege": "wait"}),
        Reply(503, b"<html>edge busy</html>", {"content-type": "text/html"}),
        Reply(200, {"status": "processing", "eta": 0.01, "id": 7}),
        done("7"),
    )
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=server.base_url, poll_policy=FAST
    ) as client:
        result = await client.images.wait(7, timeout=10)
    assert result.status is Status.SUCCESS
    assert len(server.seen) == 4


def test_sync_client_from_eight_threads(server: ScriptedServer) -> None:
    ids = [str(n) for n in range(1, 41)]
    for request_id in ids:
        server.script(
            request_id, Reply(200, {"status": "processing", "eta": 0.01}), done(request_id)
        )
    client = ModelsLab(api_key=API_KEY, base_url=server.base_url, poll_policy=FAST)
    with client, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(client.images.wait, ids))
    assert [r.id for r in results] == ids
    assert not [t for t in threading.enumerate() if t.name.startswith("modelslab-fetch")]


async def test_an_early_break_over_real_sockets_leaves_nothing_running(
    server: ScriptedServer,
) -> None:
    import itertools

    for n in range(1, 200):
        server.script(str(n), done(str(n)))
    async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url) as client:
        async for outcome in client.images.fetch_many(itertools.count(1), concurrency=16):
            if outcome.index >= 20:
                break
        assert await only_this_task_left()
        assert client._transport.in_flight == 0
    assert len(server.seen) < 100
