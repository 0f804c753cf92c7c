"""The client-wide pause after a rate limit, and `max_requests_per_second`, fleet-wide.

Two clients with their own links to Redis stand for two worker processes; the scripted
API records which worker sent each request, and when.
"""

from __future__ import annotations

import contextlib
import time

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ModelsLabError
from tests.fleet_support import FleetAPI, fleet_api, worker
from tests.redis_server import RedisServer, redis_server

__all__ = ["fleet_api", "redis_server"]


async def fetch_until(client: AsyncModelsLab, stop_at: float, gap: float = 0.02) -> None:
    """Fetch again and again (a finished job) until `stop_at`, a little apart."""
    while time.monotonic() < stop_at:
        with contextlib.suppress(ModelsLabError):
            await client.images.fetch("job")
        await anyio.sleep(gap)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "alone"])
async def test_a_rate_limit_on_one_worker_pauses_every_worker(
    redis_server: RedisServer, fleet_api: FleetAPI, shared: bool
) -> None:
    url = redis_server.url if shared else None
    async with worker("a", url) as a, worker("b", url) as b:
        stop_at = time.monotonic() + 2.2
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_until, a, stop_at)
            tg.start_soon(fetch_until, b, stop_at)
            await anyio.sleep(0.3)
            fleet_api.rate_limit_next["a"] = 1.0  # a's next fetch: a queue-limit 429
    [limited] = fleet_api.limited_at
    during = fleet_api.by("b", limited + 0.1, limited + 1.0)
    after = fleet_api.by("b", limited + 1.0, limited + 1.8)
    if shared:
        assert during == []  # told within 0.1 s, b sent nothing until the pause ended
        assert after  # and came back with it
        assert after[0].at - (limited + 1.0) < 0.5
    else:
        assert len(during) > 10  # alone, b knew nothing of a's rate limit


async def test_max_requests_per_second_is_one_budget_for_the_fleet(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    url = redis_server.url
    async with (
        worker("a", url, max_requests_per_second=5) as a,
        worker("b", url, max_requests_per_second=5) as b,
    ):
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for client in (a, b, a, b):
                tg.start_soon(fetch_until, client, started + 2.0, 0)
    sent = sorted(f.at for f in fleet_api.fetches)
    # 5 in any second, for both together (each alone would send 10 in 2 s); seen at the
    # server, a little after each was admitted: a few tens of milliseconds of slack.
    assert all(later - earlier >= 0.9 for earlier, later in zip(sent, sent[5:], strict=False)), sent
    # Requests admitted after the 2 s (asked for before) are sent later, in budget.
    assert 8 <= sum(1 for at in sent if at < started + 2.0) <= 11
    assert fleet_api.by("a") and fleet_api.by("b")


async def test_workers_configured_with_other_rates_keep_separate_budgets(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    url = redis_server.url
    async with (
        worker("a", url, max_requests_per_second=5) as a,
        worker("b", url, max_requests_per_second=3) as b,
    ):
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_until, a, started + 2.0, 0)
            tg.start_soon(fetch_until, b, started + 2.0, 0)
    # Each value is a budget of its own: a at 5/s and b at 3/s, about 16 in all.
    assert 8 <= len(fleet_api.by("a", started, started + 2.0)) <= 11
    assert 4 <= len(fleet_api.by("b", started, started + 2.0)) <= 7
