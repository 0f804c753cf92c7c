"""The blocking facade: same calls, a private loop thread, safe from loops and threads."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIStatusError,
    ClientClosedError,
    GenerationFailedError,
    ModelsLab,
    Status,
)
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL, FakeClock, echo_success


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelslab-fetch")]


@pytest.fixture
def sync_client(clock: FakeClock, router: respx.MockRouter) -> Iterator[ModelsLab]:
    with ModelsLab(api_key=API_KEY, clock=clock) as client:
        yield client
    assert loop_threads() == []


def echo_id(request: httpx.Request) -> httpx.Response:
    request_id = json.loads(request.content)["request_id"]
    return httpx.Response(200, json={"status": "success", "id": request_id, "output": ["u"]})


def test_sync_fetch_and_wait(sync_client: ModelsLab, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(200, json={"status": "processing", "eta": 2, "id": 1}),
        httpx.Response(200, json={"status": "success", "id": 1, "output": ["u"]}),
        httpx.Response(200, json={"status": "processing", "id": 1}),
    ]
    assert sync_client.images.fetch(1).status is Status.PROCESSING
    assert sync_client.images.wait(1, timeout=60).output == ["u"]
    assert sync_client.images.fetch("1").status is Status.PROCESSING


def test_sync_super_resolution(sync_client: ModelsLab, router: respx.MockRouter) -> None:
    router.post(f"{BASE_URL}/v1/enterprise/super_resolution/fetch/5").respond(
        json={"status": "success", "id": 5, "output": ["u"]}
    )
    assert sync_client.enterprise.super_resolution.fetch(5).succeeded
    assert sync_client.enterprise.super_resolution.wait(5).succeeded


def test_errors_keep_their_class(sync_client: ModelsLab, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(404),
        httpx.Response(200, json={"status": "failed", "id": 1, "message": "nsfw"}),
    ]
    with pytest.raises(APIStatusError):
        sync_client.images.fetch(1)
    with pytest.raises(GenerationFailedError, match="nsfw"):
        sync_client.images.wait(1)


def test_the_loop_thread_starts_lazily_and_close_joins_it(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_id)
    client = ModelsLab(api_key=API_KEY, clock=clock)
    assert loop_threads() == []
    client.images.fetch(1)
    assert len(loop_threads()) == 1
    client.close()
    assert loop_threads() == []
    client.close()  # idempotent


def test_closing_an_unused_client_starts_nothing() -> None:
    before = threading.active_count()
    ModelsLab(api_key=API_KEY).close()
    assert threading.active_count() == before


def test_calls_after_close_raise_client_closed(clock: FakeClock, router: respx.MockRouter) -> None:
    route = router.post(IMAGES_URL).mock(side_effect=echo_id)
    with ModelsLab(api_key=API_KEY, clock=clock) as client:
        client.images.fetch(1)
    with pytest.raises(ClientClosedError, match="closed"):
        client.images.fetch(1)
    with pytest.raises(ClientClosedError):
        client.enterprise.super_resolution.wait(1)
    assert route.call_count == 1
    assert loop_threads() == []


async def test_works_from_inside_a_running_event_loop(
    sync_client: ModelsLab, router: respx.MockRouter
) -> None:
    # As in Jupyter or an async handler calling legacy code: a loop is running here.
    asyncio.get_running_loop()
    router.post(IMAGES_URL).mock(side_effect=echo_id)
    assert sync_client.images.fetch(42).id == "42"
    assert sync_client.images.wait(43).id == "43"


def test_works_from_inside_an_anyio_run() -> None:
    with respx.mock:
        respx.post(IMAGES_URL).mock(side_effect=echo_id)
        with ModelsLab(api_key=API_KEY) as client:

            async def legacy_caller() -> str:
                return client.images.fetch(9).id

            assert anyio.run(legacy_caller) == "9"
    assert loop_threads() == []


def test_eight_threads_share_one_client(sync_client: ModelsLab, router: respx.MockRouter) -> None:
    route = router.post(IMAGES_URL).mock(side_effect=echo_id)
    baseline = threading.active_count()
    ids = [str(n) for n in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(sync_client.images.wait, ids))
    assert [r.id for r in results] == ids
    assert route.call_count == len(ids)
    assert len(loop_threads()) == 1
    assert threading.active_count() <= baseline + 1


def test_eight_threads_racing_to_start_get_one_loop_thread(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_id)
    client = ModelsLab(api_key=API_KEY, clock=clock)
    barrier = threading.Barrier(8)

    def first_call(n: int) -> str:
        barrier.wait()
        return client.images.fetch(n).id

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(first_call, range(8)), key=int) == [str(n) for n in range(8)]
    assert len(loop_threads()) == 1
    client.close()
    assert loop_threads() == []


def test_close_from_another_thread_fails_calls_in_flight_cleanly(
    router: respx.MockRouter,
) -> None:
    started = threading.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    router.post(IMAGES_URL).mock(side_effect=hang)
    client = ModelsLab(api_key=API_KEY)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.images.wait(1, timeout=None)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(5)
    client.close()
    caller.join(5)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosedError)
    assert loop_threads() == []


def test_repr_names_no_secret(sync_client: ModelsLab) -> None:
    assert API_KEY not in repr(sync_client)
    assert repr(sync_client) == "ModelsLab(base_url='https://modelslab.com/api', max_retries=3)"
    assert sync_client.base_url == "https://modelslab.com/api"
    assert sync_client.max_retries == 3
    assert sync_client.timeout.read == 30.0
    assert "SyncFetchResource" in repr(sync_client.images)
    assert "super_resolution" in repr(sync_client.enterprise)


def test_a_client_never_closed_is_closed_when_collected(router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_success)
    client = ModelsLab(api_key=API_KEY)
    assert client.images.fetch(1).succeeded
    assert any(t.name == "modelslab-fetch" for t in threading.enumerate())
    del client
    gc.collect()
    assert not any(t.name == "modelslab-fetch" for t in threading.enumerate())
