"""Shutdown and cancellation: prompt, clean, and nothing left behind (checked)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ClientClosedError, ModelsLab
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.backends import leftover_tasks

pytestmark = pytest.mark.integration


def client_sockets(server: SimulatorServer) -> int:
    """This process's sockets connected *to* the simulator (its own ends are not counted).

    The simulator runs in a thread of this process, so counting every socket would also
    count the server's ends, which it closes on its own schedule after the client leaves.
    """
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    port = urlsplit(server.base_url).port
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            count += remote_port == port and int(fields[9]) in inodes
    return count


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("modelslab-fetch")]


async def test_an_async_client_leaves_no_socket_or_task(modelslab_server: SimulatorServer) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(50)]
    async with AsyncModelsLab() as client:
        outcomes = [o async for o in client.images.wait_many(ids, concurrency=16)]
        assert all(o.ok for o in outcomes)
        assert client_sockets(modelslab_server) > 0  # connections were kept alive while in use
    assert client_sockets(modelslab_server) == 0
    assert leftover_tasks() == []


def test_a_sync_client_leaves_no_thread_or_socket(modelslab_server: SimulatorServer) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(20)]
    with ModelsLab() as client:
        assert sum(o.ok for o in client.images.wait_many(ids)) == 20
        assert loop_threads() == ["modelslab-fetch"]
        assert client_sockets(modelslab_server) > 0
    assert loop_threads() == []
    assert client_sockets(modelslab_server) == 0


def test_closing_from_another_thread_ends_a_sync_batch_cleanly(
    modelslab_server: SimulatorServer,
) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue() for _ in range(3)] + [sim.queue(ready_in=3600) for _ in range(3)]
    client = ModelsLab()
    seen: list[str] = []
    closed_early: list[str] = []
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            for outcome in client.images.wait_many(ids):
                if outcome.ok:
                    seen.append(outcome.request_id)
                else:
                    # A wait ended by the close may be delivered before the batch sees
                    # the close itself (they race, by nature): it says so, and is never
                    # mistaken for a job's own failure.
                    assert isinstance(outcome.error, ClientClosedError), outcome.error
                    closed_early.append(outcome.request_id)
        except BaseException as exc:
            raised.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    consumer.join(10)
    assert not consumer.is_alive()
    assert sorted(seen) == sorted(ids[:3])
    assert set(closed_early) <= set(ids[3:])
    assert len(raised) == 1 and isinstance(raised[0], ClientClosedError)
    assert loop_threads() == []


async def test_aclose_ends_a_hundred_waits_asleep_between_polls_at_once(
    modelslab_server: SimulatorServer,
) -> None:
    # Each wait sleeps until its next poll (the jobs are an hour away); aclose() must end
    # them all, each with ClientClosedError, not leave them to run until that poll.
    ids = [modelslab_server.simulator.queue(ready_in=3600) for _ in range(100)]
    client = AsyncModelsLab()
    ended: dict[str, BaseException | None] = {}
    first_polls, all_ended = anyio.Event(), anyio.Event()

    async def wait(request_id: str) -> None:
        try:
            await client.images.wait(request_id, timeout=None, on_update=lambda _: polled())
        except BaseException as exc:
            ended[request_id] = exc
        else:
            ended[request_id] = None
        if len(ended) == len(ids):
            all_ended.set()

    polls = 0

    def polled() -> None:
        nonlocal polls
        polls += 1
        if polls == len(ids):
            first_polls.set()

    async with anyio.create_task_group() as tg:
        for request_id in ids:
            tg.start_soon(wait, request_id)
        with anyio.fail_after(10):
            await first_polls.wait()
        started = time.monotonic()
        await client.aclose()
        with anyio.fail_after(1):  # all end at once, not at their next poll
            await all_ended.wait()
    assert time.monotonic() - started < 1
    assert all(isinstance(error, ClientClosedError) for error in ended.values()), ended
    assert {error.request_id for error in ended.values() if error} == set(ids)  # type: ignore[attr-defined]
    assert leftover_tasks() == []


def test_close_from_another_thread_ends_a_blocking_wait_asleep_between_polls(
    modelslab_server: SimulatorServer,
) -> None:
    request_id = modelslab_server.simulator.queue(ready_in=3600)
    client = ModelsLab()
    polled = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.images.wait(request_id, timeout=None, on_update=lambda _: polled.set())
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert polled.wait(10)
    started = time.monotonic()
    client.close()
    waiter.join(5)
    assert time.monotonic() - started < 1
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError)
    assert loop_threads() == []


async def test_every_call_after_close_raises_a_clear_error() -> None:
    client = AsyncModelsLab(api_key="k")
    await client.aclose()
    calls: list[Callable[[], object]] = [
        lambda: client.images.wait_many([1]),
        lambda: client.images.fetch_many([1]),
        lambda: client.enterprise.super_resolution.wait_many([1]),
    ]
    for call in calls:
        with pytest.raises(ClientClosedError, match="closed"):
            call()
    with pytest.raises(ClientClosedError):
        await client.images.fetch(1)
    with pytest.raises(ClientClosedError):
        await client.download_many([], "unused")
    sync = ModelsLab(api_key="k")
    sync.close()
    with pytest.raises(ClientClosedError):
        sync.images.wait_many([1])
    with pytest.raises(ClientClosedError):
        sync.images.fetch(1)


SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from modelslab_fetch import ModelsLab

    ids = sys.argv[1:]
    done = 0
    started = None
    client = ModelsLab()
    try:
        for outcome in client.images.wait_many(ids):
            done += 1
            print("outcome", outcome.request_id, flush=True)
    except KeyboardInterrupt:
        started = time.monotonic()
        print("interrupted after", done, flush=True)
    finally:
        client.close()
    print("closed in %.2f s" % (time.monotonic() - started), flush=True)
    print("threads", sorted(t.name for t in threading.enumerate()), flush=True)
    """
)


def test_ctrl_c_during_a_sync_batch_returns_promptly_with_what_was_done(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ready = [sim.queue() for _ in range(4)]
    never = [sim.queue(ready_in=3600) for _ in range(4)]
    script = tmp_path / "consumer.py"
    script.write_text(SCRIPT)
    env = {**os.environ}
    with subprocess.Popen(
        [sys.executable, str(script), *ready, *never],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        outcomes = [process.stdout.readline() for _ in range(4)]
        assert all(line.startswith("outcome") for line in outcomes)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=15)
        elapsed = time.monotonic() - interrupted_at
    assert process.returncode == 0, errors
    assert "interrupted after 4" in rest
    assert "threads ['MainThread']" in rest
    assert elapsed < 5


WAIT_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from modelslab_fetch import ModelsLab

    never, ready = sys.argv[1:]
    client = ModelsLab()
    print("ready", client.images.fetch(ready).succeeded, flush=True)
    try:
        print("waiting", flush=True)
        client.images.wait(never, timeout=None)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    default = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    print("default handler back", default, flush=True)
    print("then", client.images.fetch(ready).succeeded, flush=True)
    client.close()
    print("threads", sorted(t.name for t in threading.enumerate()), flush=True)
    """
)


def test_ctrl_c_while_the_main_thread_runs_a_call_cancels_it_and_leaves_the_client_usable(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    # The main thread runs the client's loop itself during a call; Ctrl-C must cancel
    # the call (not land inside the connection pool), raise KeyboardInterrupt promptly,
    # and leave Python's own handler and a working client behind.
    sim = modelslab_server.simulator
    never, ready = sim.queue(ready_in=3600), sim.queue()
    script = tmp_path / "waiter.py"
    script.write_text(WAIT_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script), never, ready],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready True\n"
            assert process.stdout.readline() == "waiting\n"
            time.sleep(0.5)  # in the wait: asleep in the loop between two polls
            interrupted_at = time.monotonic()
            process.send_signal(signal.SIGINT)
            rest, errors = process.communicate(timeout=15)
            elapsed = time.monotonic() - interrupted_at
        finally:
            process.kill()
    assert process.returncode == 0, errors
    assert rest.splitlines() == [
        "interrupted",
        "default handler back True",
        "then True",
        "threads ['MainThread']",
    ]
    assert elapsed < 5
    assert "Traceback" not in errors


def test_aclose_ends_a_call_made_through_an_anyio_portal_on_the_same_loop() -> None:
    # A sync endpoint of Starlette or FastAPI calls the client through anyio.from_thread,
    # which tells sniffio "asyncio" by a context variable; closing from an ordinary task
    # of the same loop must still end that call at once. The answer never comes (a mock
    # that sleeps: closing no connection can end it, only the call's scope).
    import httpx
    import respx

    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json={"status": "processing", "id": 1})

    async def main() -> tuple[BaseException | None, float]:
        client = AsyncModelsLab(api_key="k" * 20)
        caught: list[BaseException] = []
        asked = threading.Event()

        def from_a_worker_thread() -> None:
            try:
                asked.set()
                anyio.from_thread.run(client.images.fetch, "1")
            except BaseException as exc:
                caught.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, from_a_worker_thread)
            await anyio.to_thread.run_sync(asked.wait)
            await asyncio.sleep(0.3)  # the request is in the mock's sleep by now
            started = time.monotonic()
            await client.aclose()
        return (caught[0] if caught else None), time.monotonic() - started

    with respx.mock(assert_all_called=False) as router:
        router.post(url__regex=r".*").side_effect = never
        error, took = asyncio.run(main())  # an ordinary task closes: anyio.run would not tell
    assert isinstance(error, ClientClosedError)
    assert took < 5
