"""Process models: fork after use, one client across event loops, batches left by `break`.

The fork and event-loop cases run in real subprocesses (`python -X dev`, ResourceWarnings
as errors) against the simulator served on 127.0.0.1, each bounded in time; stderr must
stay empty: no warning, no traceback, no "Task exception was never retrieved". A few
in-process twins exercise the same paths where coverage can see them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelslab_fetch import AsyncModelsLab, ConfigurationError, ModelsLab
from modelslab_fetch._per_loop import _left_behind
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.loopback import Reply, scripted_server

pytestmark = pytest.mark.integration

needs_fork = pytest.mark.skipif(
    not hasattr(os, "fork") or not Path("/proc/self/fd").exists(),
    reason="needs os.fork() and /proc (Linux)",
)

SCRIPT_TIMEOUT = 20.0
SLOW_STEP = re.compile(r"Executing <.*> took \d+\.\d+ seconds")


def run_script(
    tmp_path: Path, code: str, *args: str, warnings: str = "error::ResourceWarning"
) -> subprocess.CompletedProcess[str]:
    """Run `code` as a script in a fresh `python -X dev`; it inherits the simulator's env."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", warnings, str(script), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        cwd=tmp_path,
        check=False,
    )


def assert_clean(done: subprocess.CompletedProcess[str], last_line: str) -> None:
    assert done.returncode == 0, done.stderr + done.stdout
    # asyncio's debug mode (-X dev) reports any step slower than 0.1 s: a verdict on this
    # shared machine's speed (loading certificates, a busy core), not on the code.
    stderr = [line for line in done.stderr.splitlines() if not SLOW_STEP.fullmatch(line)]
    assert stderr == []
    assert done.stdout.splitlines()[-1] == last_line


FORK_SCRIPT = """
    import gc
    import os
    import sys
    import time

    from modelslab_fetch import ModelsLab

    first, second, third = sys.argv[1:]


    def sockets():
        fds = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    fds.add(int(fd))
            except OSError:
                pass
        return fds


    client = ModelsLab()
    assert client.images.wait(first, timeout=10).status == "success"  # the warm-up call
    inherited = sockets()
    assert inherited, "the warm-up left no connection open: nothing would be tested"

    pid = os.fork()
    if pid == 0:
        started = time.monotonic()
        assert client.images.wait(second, timeout=10).status == "success"
        assert time.monotonic() - started < 5
        gc.collect()
        # The parent's connections are still open here: the child never closed them.
        assert inherited <= sockets(), (inherited, sockets())
        print("child ok", flush=True)
        sys.exit(0)  # interpreter exit, with the client open: its finalizer must not hang

    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise SystemExit("the child did not exit within 10 s")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(done[1]) == 0, done
    assert client.images.wait(third, timeout=10).status == "success"  # the parent still works
    client.close()
    print("parent ok")
"""


@needs_fork
def test_a_sync_client_works_in_a_forked_child_and_in_the_parent(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(3)]
    done = run_script(tmp_path, FORK_SCRIPT, *ids)
    assert done.stdout.splitlines() == ["child ok", "parent ok"]
    assert_clean(done, "parent ok")
    assert modelslab_server.simulator.polls(ids) == {request_id: 1 for request_id in ids}


IN_FLIGHT_FORK_SCRIPT = """
    import os
    import sys
    import threading
    import time

    from modelslab_fetch import APITimeoutError, ModelsLab

    base_url = sys.argv[1]
    client = ModelsLab(api_key="k", base_url=base_url, max_concurrency=1, timeout=2, max_retries=0)
    raised = []


    def slow():
        try:
            client.images.fetch("slow")
        except APITimeoutError as error:
            raised.append(error)


    # Modules are imported by the first request: a fork in the middle of an import (in
    # the loop's thread) would leave the child a half-imported module, not what this tests.
    assert client.images.fetch("fast").status == "success"
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)  # the only request slot is now taken by a request that hangs
    pid = os.fork()
    if pid == 0:
        started = time.monotonic()
        assert client.images.fetch("fast").status == "success"
        assert time.monotonic() - started < 1.5, "the child waited for the parent's request"
        print("child ok", flush=True)
        sys.exit(0)
    thread.join(10)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise SystemExit("the child did not exit within 10 s")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(done[1]) == 0, done
    assert len(raised) == 1
    client.close()
    print("parent ok")
"""


@needs_fork
def test_a_fork_while_another_thread_has_a_call_in_flight(tmp_path: Path) -> None:
    with scripted_server() as server:
        server.script("slow", Reply(action="hang"))
        server.script("fast", Reply(body={"status": "success", "id": 2, "output": []}))
        done = run_script(tmp_path, IN_FLIGHT_FORK_SCRIPT, server.base_url)
    assert done.stdout.splitlines() == ["child ok", "parent ok"], done.stderr
    assert_clean(done, "parent ok")


MULTIPROCESSING_SCRIPT = """
    import multiprocessing
    import sys

    from modelslab_fetch import ModelsLab

    client = ModelsLab()


    def status(request_id):
        return client.images.wait(request_id, timeout=10).status.value


    if __name__ == "__main__":
        ids = sys.argv[1:]
        assert status(ids[0]) == "success"  # used before the workers are forked
        context = multiprocessing.get_context("fork")
        pool = context.Pool(2)
        assert pool.map(status, ids, chunksize=1) == ["success"] * len(ids)
        pool.close()
        pool.join()  # the workers exit on their own: none hangs
        worker = context.Process(target=status, args=(ids[1],))
        worker.start()
        worker.join(10)
        assert worker.exitcode == 0, worker.exitcode
        assert status(ids[-1]) == "success"
        client.close()
        print("ok")
"""


@needs_fork
def test_a_sync_client_works_in_multiprocessing_fork_workers(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(6)]
    done = run_script(tmp_path, MULTIPROCESSING_SCRIPT, *ids)
    assert_clean(done, "ok")


LOOPS_SCRIPT = """
    import asyncio
    import sys

    from modelslab_fetch import AsyncModelsLab

    ids = sys.argv[1:]
    client = AsyncModelsLab(max_concurrency=2)  # kept at module level, as scripts do


    async def task(request_id, folder):
        result = await client.images.wait(request_id, timeout=10)
        await client.download(result, folder)  # the download client too, per loop
        # More ids than max_concurrency: the client-wide limiter makes requests wait.
        return [outcome.ok async for outcome in client.images.wait_many(ids)]


    assert all(asyncio.run(task(ids[0], "one")))
    assert all(asyncio.run(task(ids[1], "two")))
    assert client._transport.in_flight == 0
    asyncio.run(client.aclose())
    print("ok")
"""


def test_an_async_client_works_across_asyncio_runs(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(6)]
    done = run_script(tmp_path, LOOPS_SCRIPT, *ids)
    assert_clean(done, "ok")
    assert len(list((tmp_path / "one").iterdir())) == len(list((tmp_path / "two").iterdir())) == 1


HTTP_CLIENT_LOOPS_SCRIPT = """
    import asyncio
    import sys

    import httpx

    from modelslab_fetch import AsyncModelsLab, ConfigurationError

    request_id = sys.argv[1]
    http_client = httpx.AsyncClient()
    client = AsyncModelsLab(http_client=http_client)


    async def first():
        assert (await client.images.wait(request_id, timeout=10)).status == "success"
        await http_client.aclose()  # yours to close, before its loop ends


    async def second():
        try:
            await client.images.fetch(request_id)
        except ConfigurationError as error:
            print(error)
        await client.aclose()


    asyncio.run(first())
    asyncio.run(second())
    print("ok")
"""


def test_your_http_client_on_a_second_loop_raises_a_clear_error(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    done = run_script(tmp_path, HTTP_CLIENT_LOOPS_SCRIPT, modelslab_server.simulator.queue())
    assert_clean(done, "ok")
    message = done.stdout.splitlines()[0]
    assert "first used on another event loop (closed since)" in message
    assert "one AsyncModelsLab per event loop" in message


BREAKS_SCRIPT = """
    import asyncio
    import sys

    from modelslab_fetch import AsyncModelsLab

    ids = sys.argv[1:]


    async def main():
        async with AsyncModelsLab() as client:
            for _ in range(30):
                # No `async with` around the batch and no aclose(): only the break.
                async for outcome in client.images.wait_many(ids):
                    break
                await asyncio.sleep(0)
            await asyncio.sleep(0.2)
            assert asyncio.all_tasks() == {asyncio.current_task()}, asyncio.all_tasks()


    asyncio.run(main())
    print("ok")
"""


def test_breaking_out_of_wait_many_logs_nothing_and_leaves_no_task(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(40)]
    done = run_script(tmp_path, BREAKS_SCRIPT, *ids, warnings="default")
    assert_clean(done, "ok")  # no "Task exception was never retrieved", no warning


# In-process twins, for coverage of the same paths.


def test_one_client_across_two_loops_in_process(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    request_id = modelslab_server.simulator.queue()
    client = AsyncModelsLab()

    async def fetch_and_save(folder: str) -> None:
        result = await client.images.wait(request_id, timeout=10)
        await client.download(result, tmp_path / folder)

    asyncio.run(fetch_and_save("one"))
    assert not client._transport._aiohttp_backends._bindings  # closed as its loop ended
    assert repr(client._transport._aiohttp_backends) == "PerLoop(0 loop(s))"
    asyncio.run(fetch_and_save("two"))
    asyncio.run(client.aclose())
    assert (tmp_path / "two").is_dir()


def test_a_loop_closed_without_finishing_async_generators_leaves_connections_alone(
    modelslab_server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = modelslab_server.simulator.queue()
    client = AsyncModelsLab()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(client.images.fetch(request_id))
    loop.close()  # no shutdown_asyncgens(): the session on it could not be closed
    kept = len(_left_behind)
    with caplog.at_level(logging.WARNING, logger="modelslab_fetch"):
        assert asyncio.run(client.images.fetch(request_id)).status == "success"
    assert "run each loop with its library's run()" in caplog.text
    assert len(_left_behind) == kept + 1  # kept, untouched: no finalizer warns
    asyncio.run(client.aclose())


def test_your_http_client_in_a_forked_child_raises_a_clear_error(
    modelslab_server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = modelslab_server.simulator.queue()

    async def main() -> None:
        async with httpx.AsyncClient() as http_client:
            client = AsyncModelsLab(http_client=http_client)
            await client.images.fetch(request_id)
            real_pid = os.getpid()
            monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # as a child sees it
            with pytest.raises(ConfigurationError, match=r"before os\.fork\(\)"):
                await client.images.fetch(request_id)
            monkeypatch.undo()
            await client.aclose()

    asyncio.run(main())


def test_your_http_client_from_two_live_loops_raises_a_clear_error(
    modelslab_server: SimulatorServer,
) -> None:
    request_id = modelslab_server.simulator.queue()
    http_client = httpx.AsyncClient()
    client = AsyncModelsLab(http_client=http_client)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(client.images.fetch(request_id))
        assert repr(client._transport._given_loop) == "LoopCheck(bound=True)"
        with pytest.raises(ConfigurationError, match=r"another event loop \(still open\)"):
            asyncio.run(client.images.fetch(request_id))
        first.run_until_complete(http_client.aclose())
        first.run_until_complete(first.shutdown_asyncgens())
    finally:
        first.close()


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelslab-fetch")]


def test_a_sync_client_after_a_fork_starts_its_own_loop(
    modelslab_server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The at-fork hook runs only in real children (tested above); the pid check is
    # its twin for forks the hook does not see, and can be driven in-process.
    request_id = modelslab_server.simulator.queue()
    client = ModelsLab()
    assert client.images.fetch(request_id).status == "success"
    parent_loop, parent_thread = client._loop.run(running_loop), loop_threads()
    parent_stopper = client._loop._stopper
    assert parent_stopper is not None
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert client.images.fetch(request_id).status == "success"
    assert client._loop.run(running_loop) is not parent_loop
    assert parent_stopper in _left_behind  # left alone, not closed
    client.close()
    assert not parent_loop.is_closed()
    assert loop_threads() == parent_thread
    monkeypatch.undo()
    parent_stopper.close()  # this is not really a child: the "parent" stops its own loop
    assert loop_threads() == []


def test_closing_a_used_client_after_a_fork_touches_nothing(
    modelslab_server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = ModelsLab()
    assert client.images.fetch(modelslab_server.simulator.queue()).status == "success"
    parent_loop, parent_thread = client._loop.run(running_loop), loop_threads()
    parent_stopper = client._loop._stopper
    assert parent_stopper is not None
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    client._loop.spawn(client._async.aclose)  # nothing to spawn on: the loop is the parent's
    client.close()  # what a child's exit does: must return at once, not touch the parent's
    assert not parent_loop.is_closed()
    assert loop_threads() == parent_thread  # the "parent's" thread, untouched
    monkeypatch.undo()
    parent_stopper.close()
    assert parent_loop.is_closed()
    assert loop_threads() == []


def test_the_cheap_loop_check_names_asyncio_only_when_asyncio_code_runs() -> None:
    # PerLoop, traffic control and the call scopes ask it on every request instead of
    # anyio's token: it must never take trio (even a guest on an asyncio loop) for asyncio.
    import sniffio
    import trio

    from modelslab_fetch._per_loop import running_asyncio_loop

    async def on_asyncio() -> None:
        assert running_asyncio_loop() is asyncio.get_running_loop()
        token = sniffio.current_async_library_cvar.set("trio")  # as trio-asyncio says
        try:
            assert running_asyncio_loop() is None
        finally:
            sniffio.current_async_library_cvar.reset(token)

    async def on_trio() -> None:
        assert running_asyncio_loop() is None

    async def trio_as_a_guest() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            on_trio,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        (await done).unwrap()  # on_trio's assertion, raised here if it failed

    assert running_asyncio_loop() is None  # no loop at all
    asyncio.run(on_asyncio())
    trio.run(on_trio)
    asyncio.run(trio_as_a_guest())
