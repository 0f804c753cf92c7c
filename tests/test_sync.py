"""The blocking facade: same calls, on the client's own loop thread, safe from loops and threads."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import threading
import time
from _thread import interrupt_main
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIStatusError,
    ClientClosedError,
    GenerationFailedError,
    ModelsLab,
    PollUpdate,
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


def answering_from(threads: list[int]) -> Callable[[httpx.Request], httpx.Response]:
    """An echo that notes the thread each request was made in: the one running the loop."""

    def answer(request: httpx.Request) -> httpx.Response:
        threads.append(threading.get_ident())
        return echo_id(request)

    return answer


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def loop_of(client: ModelsLab) -> asyncio.AbstractEventLoop:
    """The event loop the blocking client's calls run on."""
    return client._loop.run(_running_loop)


def test_every_call_runs_on_the_clients_own_loop_thread(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    threads: list[int] = []
    router.post(IMAGES_URL).mock(side_effect=answering_from(threads))
    client = ModelsLab(api_key=API_KEY, clock=clock)
    assert loop_threads() == []  # nothing is started before the first call
    assert client.images.fetch(1).id == "1"
    assert client.images.wait(2).id == "2"
    [loop_thread] = loop_threads()
    assert threads == [loop_thread.ident] * 2  # not the calling thread
    loop = loop_of(client)
    client.close()
    assert loop.is_closed()
    assert loop_threads() == []
    client.close()  # idempotent


def test_one_loop_thread_serves_calls_while_a_batch_works_between_reads(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    threads: list[int] = []
    echo_noting_thread = answering_from(threads)

    async def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["request_id"] == "slow":
            await anyio.sleep_forever()  # work left after the first read
        return echo_noting_thread(request)

    router.post(IMAGES_URL).mock(side_effect=answer)
    with ModelsLab(api_key=API_KEY, clock=clock) as client:
        batch = client.images.fetch_many(["quick", "slow"])
        assert next(batch).request_id == "quick"
        assert client.images.fetch("x").id == "x"  # while the batch waits for "slow"
        batch.close()
        assert client.images.fetch("y").id == "y"
        [loop_thread] = loop_threads()
        assert threads == [loop_thread.ident] * 3
    assert loop_threads() == []


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


def test_eight_threads_racing_to_start_get_one_loop(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    loops: set[int] = set()

    def answer(request: httpx.Request) -> httpx.Response:
        loops.add(id(asyncio.get_running_loop()))
        return echo_id(request)

    router.post(IMAGES_URL).mock(side_effect=answer)
    client = ModelsLab(api_key=API_KEY, clock=clock)
    barrier = threading.Barrier(8)

    def first_call(n: int) -> str:
        barrier.wait()
        return client.images.fetch(n).id

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(first_call, range(8)), key=int) == [str(n) for n in range(8)]
    assert len(loops) == 1  # one loop, one pool of connections, whoever asked first
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
    loop = loop_of(client)
    assert not loop.is_closed()
    del client
    gc.collect()
    assert loop.is_closed()
    assert loop_threads() == []


def test_a_blocking_call_from_its_own_on_update_is_refused_clearly(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(200, json={"status": "processing", "eta": 1, "id": 1}),
        httpx.Response(200, json={"status": "success", "id": 1, "output": ["u"]}),
    ]
    with ModelsLab(api_key=API_KEY, clock=clock) as client:

        def nested(update: PollUpdate) -> None:
            client.images.fetch(2)  # on_update runs on the loop's thread: it would wait for itself

        with pytest.raises(RuntimeError, match=r"its own event loop's thread.*AsyncModelsLab"):
            client.images.wait(1, on_update=nested)
        assert client.images.wait(1).succeeded  # the client is still fine


def test_context_variables_follow_the_call_either_way(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_id)
    request_tag: ContextVar[str] = ContextVar("request_tag")
    seen: list[str | None] = []

    def note(update: PollUpdate) -> None:
        seen.append(request_tag.get(None))

    with ModelsLab(api_key=API_KEY, clock=clock) as client:
        request_tag.set("plain thread")
        client.images.wait(1, on_update=note)

        async def in_a_running_loop() -> None:
            request_tag.set("inside a running loop")
            client.images.wait(2, on_update=note)

        anyio.run(in_a_running_loop)
    assert seen == ["plain thread", "inside a running loop"]


def test_bad_arguments_raise_in_the_caller_either_way(sync_client: ModelsLab) -> None:
    with pytest.raises(TypeError):
        sync_client.images.fetch()  # type: ignore[call-arg]

    raised: list[BaseException] = []

    async def in_a_running_loop() -> None:
        try:
            sync_client.images.fetch(1, 2, 3)  # type: ignore[call-arg]
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=anyio.run, args=(in_a_running_loop,))
    caller.start()
    caller.join(5)  # handed over, it must not hang either
    assert not caller.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], TypeError)


def test_closing_inside_a_call_ends_it_and_shuts_the_loop_after(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(
        return_value=httpx.Response(200, json={"status": "processing", "eta": 1, "id": 1})
    )
    client = ModelsLab(api_key=API_KEY, clock=clock)

    def close_now(update: PollUpdate) -> None:
        client.close()  # from inside the call: must neither wait for itself nor hang

    loop = loop_of(client)
    with pytest.raises(ClientClosedError):
        client.images.wait(1, on_update=close_now, timeout=None)
    deadline = time.monotonic() + 5
    while not loop.is_closed() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop.is_closed()
    for thread in loop_threads():
        thread.join(5)
    assert loop_threads() == []


async def test_closing_from_inside_a_running_event_loop_shuts_everything(
    router: respx.MockRouter,
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_id)
    client = ModelsLab(api_key=API_KEY)
    assert client.images.fetch(3).id == "3"  # an event loop runs in this thread too
    loop = loop_of(client)
    client.close()
    assert loop.is_closed()
    assert loop_threads() == []


def test_ctrl_c_while_the_main_thread_runs_a_call_cancels_that_call(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    # interrupt_main() is Ctrl-C as Python's signal machinery sees it; the real signal,
    # in a process of its own, is in test_shutdown.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    router.post(IMAGES_URL).mock(
        return_value=httpx.Response(200, json={"status": "processing", "eta": 1, "id": 1})
    )
    with ModelsLab(api_key=API_KEY, clock=clock) as client:
        with pytest.raises(KeyboardInterrupt):
            client.images.wait(1, timeout=None, on_update=lambda update: interrupt_main())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

        def interrupted_in_the_loop(update: PollUpdate) -> None:
            # As a second Ctrl-C does (raised by the handler at once), or one under a
            # handler of the program's own: KeyboardInterrupt inside the loop's work.
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            client.images.wait(1, timeout=None, on_update=interrupted_in_the_loop)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert client.images.fetch(1).status is Status.PROCESSING  # still usable
