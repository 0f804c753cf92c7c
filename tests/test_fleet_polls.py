"""One poller per id: workers waiting on the same id share its polls through Redis."""

from __future__ import annotations

import time

import anyio

from modelslab_fetch import AsyncModelsLab
from tests.fleet_support import FleetAPI, fleet_api, worker
from tests.redis_server import RedisServer, redis_server

__all__ = ["fleet_api", "redis_server"]


async def test_three_workers_on_the_same_ids_fetch_as_one(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    ids = [f"job-{n}" for n in range(5)]
    for n, rid in enumerate(ids):
        fleet_api.queue(rid, 1.0 + 0.1 * n)
    clients = [worker(name, redis_server.url) for name in "abc"]
    results: dict[str, list[str]] = {}

    async def collect(name: str, client: AsyncModelsLab) -> None:
        async with client:
            outcomes = [o async for o in client.images.wait_many(ids, timeout=10)]
        results[name] = sorted(o.request_id for o in outcomes if o.ok)

    async with anyio.create_task_group() as tg:
        for name, client in zip("abc", clients, strict=True):
            tg.start_soon(collect, name, client)
    assert all(found == sorted(ids) for found in results.values())
    # A lone worker polls each id at 0 s and at its eta (1 s), then once more: 2-3.
    per_id = [fleet_api.fetches_of(rid) for rid in ids]
    # and the polls were one worker's at a time: at most one fetch per id and instant.
    assert max(per_id) <= 3, per_id


async def test_two_waits_on_one_id_in_one_process_share_too(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    async with worker("a", redis_server.url) as a:
        fleet_api.queue("job", 0.5)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.images.wait, "job")
            tg.start_soon(a.images.wait, "job")
        assert time.monotonic() - started < 1.2  # the follower ended with the poller
    assert fleet_api.fetches_of("job") <= 3  # as one wait would


async def test_a_wait_cancelled_while_polling_lets_another_take_over_at_once(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    fleet_api.queue("job", 1.0)
    async with worker("a", redis_server.url) as a, worker("b", redis_server.url) as b:
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.images.wait, "job")
            await anyio.sleep(0.2)  # a holds the lease, for its sleep plus 2 s
            tg.cancel_scope.cancel()  # a's wait ends: its lease is given up
        started = time.monotonic()
        await b.images.wait("job")
    assert fleet_api.by("b")[0].at - started < 0.2  # b polled at once, not after 2 s
