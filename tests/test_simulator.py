"""The simulator, driven through the SDK in-process (httpx.ASGITransport, no socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from modelslab_fetch import (
    AsyncModelsLab,
    AuthenticationError,
    GenerationFailedError,
    Status,
)
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, in_process_client
from tests.conftest import API_KEY, FakeClock

BASE = "http://127.0.0.1/api"


@asynccontextmanager
async def wire(app: SimulatorApp) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client into `app`: what the simulator sends, byte for byte."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


@pytest.fixture
def simulator(clock: FakeClock) -> Simulator:
    return Simulator(seed=3, clock=clock.now)


@pytest.fixture
async def sim_client(simulator: Simulator, clock: FakeClock) -> AsyncIterator[AsyncModelsLab]:
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with (
        httpx.AsyncClient(transport=transport) as http_client,
        AsyncModelsLab(
            api_key=API_KEY, base_url=BASE, http_client=http_client, clock=clock
        ) as client,
    ):
        yield client


async def test_a_job_is_processing_until_ready_then_succeeds(
    simulator: Simulator, sim_client: AsyncModelsLab, clock: FakeClock
) -> None:
    rid = simulator.queue(ready_in=5.0, images=2)
    first = await sim_client.images.fetch(rid)
    assert first.status is Status.PROCESSING
    assert first.eta is not None and 3.0 <= first.eta <= 7.0
    assert first.message == "Try to fetch request after seconds estimated"
    assert len(first.future_links) == 2
    done = await sim_client.images.wait(rid)
    assert done.succeeded
    assert done.id == rid
    assert done.output == first.future_links
    assert clock.elapsed >= 5.0
    assert simulator.jobs[rid].polls >= 2


async def test_many_jobs_with_failures(simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    ids = simulator.queue_many(60, ready_in=(1, 8), failure_rate=0.2)
    outcomes = [o async for o in sim_client.images.wait_many(ids)]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    failed = [o for o in outcomes if not o.ok]
    assert failed
    assert all(isinstance(o.error, GenerationFailedError) for o in failed)
    assert {simulator.jobs[o.request_id].final for o in failed} <= {"failed", "error"}
    assert sum(simulator.polls().values()) / len(ids) < 5


async def test_wrong_key_is_an_http_200_invalid_key_body(
    clock: FakeClock,
) -> None:
    app = SimulatorApp(Simulator(api_key="the-right-key", clock=clock.now))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http_client:
        client = AsyncModelsLab(api_key="wrong", base_url=BASE, http_client=http_client)
        with pytest.raises(AuthenticationError, match="Invalid Api Key"):
            await client.images.fetch(1)


async def test_unknown_ids_are_not_found_unless_auto_ready(
    simulator: Simulator, sim_client: AsyncModelsLab
) -> None:
    # As ModelsLab answers an id it does not know: a `failed` status, though no
    # generation failed, with an empty id and output.
    async with wire(SimulatorApp(simulator)) as http:
        answer = await http.post("/api/v6/images/fetch", json={"key": "k", "request_id": 424242})
        by_path = await http.post("/api/v1/enterprise/super_resolution/fetch/9", json={"key": "k"})
    for response in (answer, by_path):
        assert response.status_code == 200
        assert response.json() == {
            "status": "failed",
            "id": "",
            "message": "Request not found",
            "output": "",
        }
    simulator.auto_ready = True
    assert (await sim_client.images.fetch(424242)).succeeded


async def test_super_resolution_route(simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    rid = simulator.queue(ready_in=0.0)
    assert (await sim_client.enterprise.super_resolution.fetch(rid)).succeeded


async def test_control_routes_and_http_errors(simulator: Simulator) -> None:
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        queued = (await http.post("/_simulator/jobs", json={"count": 3, "ready_in": [1, 2]})).json()
        assert len(queued["ids"]) == 3
        assert set(queued["ready_at"]) == set(queued["ids"])
        rid = queued["ids"][0]
        compat = await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "k"})
        assert compat.json()["status"] == "processing"
        stats = (await http.get("/_simulator/stats")).json()
        assert stats[rid]["polls"] == 1
        assert (await http.get("/api/v6/images/fetch")).status_code == 405
        assert (await http.post("/nowhere")).status_code == 404
        bad = await http.post("/api/v6/images/fetch", content=b"{not json")
        assert bad.status_code == 400
        missing = await http.post("/api/v6/images/fetch", json={"key": "k"})
        assert missing.json()["message"] == {"request_id": ["required"]}


@pytest.mark.parametrize("final", ["failed", "error"])
async def test_final_failures(final: str, simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    rid = simulator.queue(final=final)  # type: ignore[arg-type]
    with pytest.raises(GenerationFailedError):
        await sim_client.images.wait(rid)
    assert "Simulator(jobs=1" in repr(simulator)


def test_fault_plans_are_deterministic_for_a_seed() -> None:
    from modelslab_fetch.testing._faults import FaultPlan

    faults = Faults(error_rate=0.2, edge_page_rate=0.2, rate_limit_every=7, rate_limit_burst=2)
    plans = [FaultPlan(faults, seed=5), FaultPlan(faults, seed=5)]
    runs = [[plan.next() for _ in range(50)] for plan in plans]
    statuses = [[None if f is None else f.status for _, f in run] for run in runs]
    assert statuses[0] == statuses[1]
    assert {429, 500, 502, 503} & set(statuses[0])
    assert statuses[0][6:8] == [429, 429]  # the 7th and 8th fetch: a burst of two


async def test_the_sdk_survives_every_kind_of_fault(clock: FakeClock) -> None:
    simulator = Simulator(seed=1, clock=clock.now)
    faults = Faults(error_rate=0.15, edge_page_rate=0.15, rate_limit_every=9, retry_after=0.5)
    app = SimulatorApp(simulator, faults=faults, seed=1)
    ids = simulator.queue_many(40, ready_in=(0.5, 5))
    async with in_process_client(app, clock=clock) as client:
        outcomes = [o async for o in client.images.wait_many(ids)]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert set(app.faults.injected) >= {429, 500}
    assert any(status in app.faults.injected for status in (520, 521, 522, 523, 524))


async def test_images_are_valid_pngs_and_only_for_successes(simulator: Simulator) -> None:
    import struct
    import zlib

    ok = simulator.queue(images=2)
    failed = simulator.queue(final="failed")
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        png = (await http.get(f"/generations/{ok}-1.png")).content
        assert (await http.get(f"/generations/{ok}-2.png")).status_code == 404
        assert (await http.get(f"/generations/{failed}-0.png")).status_code == 404
        assert (await http.get("/generations/nope-0.png")).status_code == 404
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (64, 64)
    position = 8
    kinds = []
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    raw = zlib.decompress(b"".join([]) or png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8])
    assert len(raw) == 64 * (1 + 64 * 3)
