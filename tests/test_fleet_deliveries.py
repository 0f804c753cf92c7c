"""Shared deliveries: a webhook any worker's receiver accepts ends the waits of every worker.

In one process (clients with their own links to Redis, as separate processes have) and
across real processes. Jobs state a long eta, so that only a delivery can end a wait soon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import anyio

from modelslab_fetch import ModelsLab, testing
from tests.conftest import API_KEY
from tests.fleet_support import HOOK, SECRET, FleetAPI, deliver, fleet_api, hooked
from tests.redis_server import RedisServer, redis_server

__all__ = ["fleet_api", "redis_server"]


async def test_a_delivery_to_one_worker_ends_the_wait_in_another(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    fleet_api.stated_eta = 30.0
    async with hooked("a", redis_server.url) as a, hooked("b", redis_server.url) as b:
        fleet_api.queue("job-1", 0.3)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.images.wait, "job-1")
            await anyio.sleep(0.5)  # b polled once (processing) and sleeps for ~30 s
            deliver(a, "job-1")
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    # b's first poll, then the one that confirms the delivery; a polled nothing.
    assert len(fleet_api.by("b")) == 2
    assert fleet_api.by("a") == []


async def test_a_wait_that_starts_after_the_delivery_finds_it_in_redis(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    fleet_api.queue("job-2", 0.0)
    fleet_api.stated_eta = 30.0
    async with hooked("a", redis_server.url) as a:
        deliver(a, "job-2")
        await anyio.sleep(0.3)  # published by a's writer thread
    # A worker that was not running when it came: its client is made afterwards.
    async with hooked("b", redis_server.url, trust_webhooks=True) as b:
        with anyio.fail_after(1):
            result = await b.images.wait("job-2")
    assert result.id == "job-2"
    assert fleet_api.by("b") == []  # trusted: the shared delivery is the result


async def test_without_redis_a_delivery_to_another_worker_is_wasted(
    fleet_api: FleetAPI,
) -> None:
    fleet_api.queue("job-3", 0.0)
    fleet_api.stated_eta = 1.0
    async with hooked("a", None) as a, hooked("b", None) as b:
        deliver(a, "job-3")
        started = time.monotonic()
        await b.images.wait("job-3", timeout=5)
    # b learnt nothing: it polled at once (processing, eta 1 s); found it by polling.
    assert fleet_api.by("b")
    assert time.monotonic() - started < 5


CHILD = """
import json, sys, time
from modelslab_fetch import ModelsLab
base_url, redis_url, rid = sys.argv[1:4]
with ModelsLab(api_key={key!r}, base_url=base_url, redis_url=redis_url,
               webhook_url={hook!r}, webhook_secret={secret!r}, trust_webhooks=True) as client:
    print("ready", flush=True)
    started = time.monotonic()
    result = client.images.wait(rid, timeout=20)
    print(json.dumps({{"id": result.id, "elapsed": time.monotonic() - started}}), flush=True)
"""


def test_a_delivery_reaches_a_wait_in_another_process(redis_server: RedisServer) -> None:
    simulator = testing.Simulator(api_key=API_KEY)
    rid = simulator.queue(ready_in=60)  # polling alone would take a minute
    with testing.simulator_server(testing.SimulatorApp(simulator)) as base_url:
        script = CHILD.format(key=API_KEY, hook=HOOK, secret=SECRET)
        child = subprocess.Popen(
            [sys.executable, "-c", script, base_url, redis_server.url, rid],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # its wait has polled once and sleeps on the eta
            with ModelsLab(
                api_key=API_KEY,
                base_url=base_url,
                webhook_url=HOOK,
                webhook_secret=SECRET,
                redis_url=redis_server.url,
            ) as receiver:
                deliver(receiver, rid)  # this process's receiver, not the child's
                line = child.stdout.readline()
            assert child.wait(10) == 0
        finally:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
    outcome = json.loads(line)
    assert outcome["id"] == rid
    assert outcome["elapsed"] < 3
    assert simulator.polls([rid])[rid] == 1  # its first poll only: the delivery did the rest


async def test_iterators_see_only_what_their_own_receiver_accepted(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    # An app reacting to deliveries (not waiting) handles each once across the fleet.
    async with hooked("a", redis_server.url) as a, hooked("b", redis_server.url) as b:
        seen: dict[str, list[str]] = {"a": [], "b": []}
        a.webhooks.on_delivery(lambda d: seen["a"].append(d.request_id))
        b.webhooks.on_delivery(lambda d: seen["b"].append(d.request_id))
        fleet_api.queue("job-4", 0.0)
        fleet_api.stated_eta = 30.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.images.wait, "job-4")  # b's wait still ends by it
            await anyio.sleep(0.2)
            deliver(a, "job-4")
    assert seen == {"a": ["job-4"], "b": []}
