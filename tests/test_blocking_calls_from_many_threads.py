"""The blocking client shared by many threads at once: races, exits, Ctrl-C, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import ModelsLab, PollUpdate
from modelslab_fetch._clients._loop_thread import LoopThread
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.conftest import API_KEY, IMAGES_URL, FakeClock
from tests.test_shutdown import client_sockets

pytestmark = pytest.mark.integration


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelslab-fetch")]


def run_threads(targets: list[Callable[[], None]], timeout: float = 20) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [t for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} thread(s) hung"
    return errors


def test_many_threads_batches_broken_off_and_loop_callers_share_one_client(
    modelslab_server: SimulatorServer,
) -> None:
    sim = modelslab_server.simulator
    ready = [sim.queue() for _ in range(64)]
    client = ModelsLab()
    done = []

    def hammer() -> None:
        for rid in ready[:24]:
            assert client.images.fetch(rid).succeeded
        done.append(1)

    def batch_breaker() -> None:
        for _ in range(10):
            for n, outcome in enumerate(client.images.wait_many(ready)):
                assert outcome.ok
                if n == 3:
                    break
        done.append(1)

    def in_a_loop() -> None:
        async def main() -> None:
            for rid in ready[:10]:
                assert client.images.wait(rid).succeeded

        asyncio.run(main())
        done.append(1)

    def in_trio() -> None:
        async def main() -> None:
            for rid in ready[:10]:
                assert client.images.wait(rid).succeeded

        anyio.run(main, backend="trio")
        done.append(1)

    errors = run_threads([hammer] * 12 + [batch_breaker] * 2 + [in_a_loop, in_trio])
    assert errors == []
    assert len(done) == 16
    client.close()
    assert loop_threads() == []
    assert client_sockets(modelslab_server) == 0


PROCESSING = {"status": "processing", "eta": 1, "id": 1}


def call_in_thread(
    call: Callable[[], object], *, in_a_loop: bool
) -> tuple[list[object], list[BaseException]]:
    """Run `call` in a new thread (inside asyncio.run if `in_a_loop`); join it."""
    results: list[object] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            if in_a_loop:

                async def main() -> object:
                    return call()

                results.append(asyncio.run(main()))
            else:
                results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the call hung"
    return results, errors


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_an_exit_raised_by_on_update_neither_kills_the_loop_thread_nor_hangs(
    clock: FakeClock, router: respx.MockRouter, raised: type[BaseException]
) -> None:
    # on_update runs on the loop's thread. SystemExit/KeyboardInterrupt escaping the
    # task would kill that thread: the call, and every call after it, would wait forever.
    router.post(IMAGES_URL).mock(
        side_effect=[httpx.Response(200, json=PROCESSING)]
        + [httpx.Response(200, json={"status": "success", "id": 1, "output": ["u"]})] * 5
    )
    client = ModelsLab(api_key=API_KEY, clock=clock)

    def exit_now(update: PollUpdate) -> None:
        raise raised(3)

    _, errors = call_in_thread(lambda: client.images.wait(1, on_update=exit_now), in_a_loop=True)
    assert len(errors) == 1 and isinstance(errors[0], raised)
    results, errors = call_in_thread(lambda: client.images.fetch(1).id, in_a_loop=True)
    assert (results, errors) == (["1"], [])
    assert all(t.is_alive() for t in loop_threads())
    client.close()
    assert loop_threads() == []


def test_an_exit_in_one_threads_call_does_not_end_another_threads_call(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    # The main thread's wait is in flight; another thread's call raises SystemExit from
    # on_update, on the loop both share. Only that call may end, and in its own thread.
    slow_started = threading.Event()
    other_started = threading.Event()
    release = threading.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        request_id = json.loads(request.content)["request_id"]
        if request_id == "slow":
            slow_started.set()
            await anyio.to_thread.run_sync(release.wait, 10)
        else:
            other_started.set()
        return httpx.Response(200, json={"status": "success", "id": request_id, "output": ["u"]})

    router.post(IMAGES_URL).mock(side_effect=answer)
    client = ModelsLab(api_key=API_KEY, clock=clock)

    def exit_now(update: PollUpdate) -> None:
        raise SystemExit(3)

    outcome: list[BaseException] = []

    def other() -> None:
        slow_started.wait(5)
        try:
            client.images.wait("other", on_update=exit_now)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            release.set()

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    try:
        assert client.images.wait("slow").id == "slow"
    finally:
        release.set()
        thread.join(10)
    assert other_started.is_set()
    assert len(outcome) == 1 and isinstance(outcome[0], SystemExit)
    client.close()
    assert loop_threads() == []


def test_a_client_sharing_an_http_client_dropped_inside_a_call_is_still_closed(
    clock: FakeClock, router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two blocking clients given one httpx.AsyncClient share one loop. Dropping one
    # inside the other's call (in on_update, in the thread running that loop) ran its
    # finalizer there: it made a blocking call from inside a call, which raised
    # ("Exception ignored in: <finalize object>"), and its connections were never closed.
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(200, json=PROCESSING),
        httpx.Response(200, json={"status": "success", "id": 1, "output": ["u"]}),
    ]
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    shared = httpx.AsyncClient()
    keeper = ModelsLab(api_key=API_KEY, clock=clock, http_client=shared)
    dropped: list[ModelsLab] = [ModelsLab(api_key=API_KEY, clock=clock, http_client=shared)]
    dropped_async = dropped[0]._async

    def drop(update: PollUpdate) -> None:
        dropped.clear()  # the last reference: its finalizer runs here and now

    assert keeper.images.wait(1, on_update=drop).succeeded
    assert dropped == []
    assert unraisable == []
    deadline = time.monotonic() + 5
    while not dropped_async._transport.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dropped_async._transport.closed
    keeper.close()
    assert loop_threads() == []


def test_ctrl_c_while_a_call_is_being_started_stops_that_call() -> None:
    # Ctrl-C comes just as the loop's thread starts the main thread's call: the call
    # must be cancelled (not run on, unobserved, until close()) before the interruption
    # goes on in the main thread.
    loop_thread = LoopThread()
    cancelled: list[bool] = []
    main = threading.get_ident()
    assert main == threading.main_thread().ident

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    def ctrl_c_then_forever() -> Coroutine[Any, Any, None]:
        # Runs in the loop's thread as the call starts, before its coroutine exists.
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.3)  # the main thread takes the interruption and cancels meanwhile
        return forever()

    with pytest.raises(KeyboardInterrupt):
        loop_thread.run(ctrl_c_then_forever)
    assert cancelled == [True]  # waited for: cancelled before KeyboardInterrupt went on
    loop_thread.close()
    assert loop_threads() == []


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_close_from_several_threads_at_once_returns_only_when_all_is_shut(
    modelslab_server: SimulatorServer,
) -> None:
    # Only the first close() did the work; the others returned at once, while the loop
    # was still open, its helper alive and its connections open.
    sim = modelslab_server.simulator
    never = sim.queue(ready_in=3600)
    ids = [sim.queue() for _ in range(20)]
    client = ModelsLab()
    batch = client.images.wait_many([*ids, never])
    next(batch)  # a batch between reads: its work goes on, connections are open
    loop = client._loop.run(_running_loop)
    barrier = threading.Barrier(4)
    seen: list[tuple[bool, list[str], int]] = []

    def close() -> None:
        barrier.wait(5)
        client.close()
        names = [t.name for t in loop_threads()]
        seen.append((loop.is_closed(), names, client_sockets(modelslab_server)))

    assert run_threads([close] * 4) == []
    assert seen == [(True, [], 0)] * 4
