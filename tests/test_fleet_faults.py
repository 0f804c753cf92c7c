"""Redis unreachable, stopped, frozen: every wait still finishes on time by its own polling.

Nothing is lost (one outcome per id, each a success), no wait gets two outcomes, each
client warns once per fault (and reports `FleetUnavailable` once), and reconnects
within seconds when Redis returns (`FleetRestored`). A frozen server is detected by the
URL's `socket_timeout`, small here so that the test stays short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ClientEvent, FleetRestored, FleetUnavailable, testing
from tests.conftest import API_KEY
from tests.fleet_support import FleetAPI, fleet_api, worker
from tests.loopback import free_port
from tests.redis_server import RedisServer, redis_server, redis_server_or_skip

__all__ = ["fleet_api", "redis_server"]

IDS = [f"job-{n}" for n in range(6)]


def unavailable_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("is unavailable" in r.getMessage() for r in caplog.records)


async def wait_all(client: AsyncModelsLab, ids: list[str], timeout: float = 10) -> dict[str, float]:
    """Wait on `ids`; each id's finishing time (monotonic); fails on any two outcomes."""
    done: dict[str, float] = {}
    async for outcome in client.images.wait_many(ids, timeout=timeout):
        assert outcome.ok, outcome.error
        assert outcome.request_id not in done  # one outcome per id
        done[outcome.request_id] = time.monotonic()
    return done


def queue_all(api: FleetAPI, ready_in: float) -> dict[str, float]:
    for n, rid in enumerate(IDS):
        api.queue(rid, ready_in + 0.1 * n)
    return dict(api.ready_at)


async def test_redis_unreachable_from_the_start(
    fleet_api: FleetAPI, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[ClientEvent] = []
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with worker("a", nowhere, on_event=events.append) as a:
        ready = queue_all(fleet_api, 0.6)
        done = await wait_all(a, IDS)
    assert set(done) == set(IDS)
    assert all(done[rid] - ready[rid] < 1.0 for rid in IDS)  # on time, polling alone
    assert unavailable_warnings(caplog) == 1
    assert sum(isinstance(e, FleetUnavailable) for e in events) == 1


async def test_redis_stopped_in_the_middle_then_back(
    redis_server: RedisServer, fleet_api: FleetAPI, caplog: pytest.LogCaptureFixture
) -> None:
    events: dict[str, list[ClientEvent]] = {"a": [], "b": []}
    url = redis_server.url
    async with (
        worker("a", url, on_event=events["a"].append) as a,
        worker("b", url, on_event=events["b"].append) as b,
    ):
        ready = queue_all(fleet_api, 1.2)
        finished: dict[str, dict[str, float]] = {}

        async def collect(name: str, client: AsyncModelsLab) -> None:
            finished[name] = await wait_all(client, IDS)

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, "a", a)
            tg.start_soon(collect, "b", b)
            await anyio.sleep(0.4)  # both wait; one polls each id
            redis_server.stop()
        assert set(finished["a"]) == set(finished["b"]) == set(IDS)
        late = [t - ready[rid] for name in "ab" for rid, t in finished[name].items()]
        assert max(late) < 1.5
        restarted = time.monotonic()
        redis_server.start()
        with anyio.fail_after(5):
            while not all(any(isinstance(e, FleetRestored) for e in events[n]) for n in "ab"):  # noqa: ASYNC110 - events come from threads
                await anyio.sleep(0.05)
        assert time.monotonic() - restarted < 3  # back within seconds
        # And shares again: one poller for a new id.
        fleet_api.queue("after", 0.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.images.wait, "after")
            tg.start_soon(b.images.wait, "after")
        assert fleet_api.fetches_of("after") <= 3
    for name in "ab":
        assert sum(isinstance(e, FleetUnavailable) for e in events[name]) == 1
    assert unavailable_warnings(caplog) == 2  # once per client


async def test_redis_frozen_costs_each_wait_at_most_one_timeout(
    redis_server: RedisServer, fleet_api: FleetAPI, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_server.url_with(socket_timeout=0.3)
    async with worker("a", url) as a, worker("b", url) as b:
        ready = queue_all(fleet_api, 1.2)
        finished: dict[str, dict[str, float]] = {}

        async def collect(name: str, client: AsyncModelsLab) -> None:
            finished[name] = await wait_all(client, IDS)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, "a", a)
                tg.start_soon(collect, "b", b)
                await anyio.sleep(0.4)
                redis_server.freeze()  # SIGSTOP: sockets open, no answer
        finally:
            redis_server.thaw()
    assert set(finished["a"]) == set(finished["b"]) == set(IDS)
    late = [t - ready[rid] for name in "ab" for rid, t in finished[name].items()]
    assert max(late) < 1.5  # polling on time, the freeze noticed within its timeout
    assert unavailable_warnings(caplog) == 2  # once per client, not once per request


CHILD = """
import sys
from modelslab_fetch import ModelsLab
base_url, redis_url, rid = sys.argv[1:4]
with ModelsLab(api_key={key!r}, base_url=base_url, redis_url=redis_url) as client:
    print("waiting", flush=True)
    client.images.wait(rid, timeout=30)
"""


def test_when_the_poller_dies_another_worker_takes_over(redis_server: RedisServer) -> None:
    redis_server_or_skip()
    simulator = testing.Simulator(api_key=API_KEY, eta_error=0.0)
    rid = simulator.queue(ready_in=2.0)
    with testing.simulator_server(testing.SimulatorApp(simulator)) as base_url:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(key=API_KEY), base_url, redis_server.url, rid],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "waiting"
            deadline = time.monotonic() + 5
            while simulator.polls([rid])[rid] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert simulator.polls([rid])[rid] == 1  # the child polls: it holds the lease
        finally:
            child.kill()  # dies holding it, as a crashed worker does
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        from modelslab_fetch import ModelsLab

        started = time.monotonic()
        with ModelsLab(api_key=API_KEY, base_url=base_url, redis_url=redis_server.url) as client:
            result = client.images.wait(rid, timeout=15)
        # It followed the dead worker's lease until it lapsed, then polled itself.
        assert result.id == rid
        assert time.monotonic() - started < 6
        assert simulator.polls([rid])[rid] >= 2
