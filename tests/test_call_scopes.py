"""A call's cancel scope on asyncio: ends the call on close or deadline, and nothing else.

On asyncio a call runs in a scope of asyncio's own (`_closing._TaskScope`), which cancels
its task once, where anyio's scope would cancel it at every await. These tests hold it to
what anyio's scope promised: it swallows only its own cancellation, lets everyone else's
through (an outer anyio scope, `task.cancel()`), leaves no cancellation pending after it,
and leaves the task's cancellation count as it found it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ClientClosedError, WaitTimeoutError
from modelslab_fetch._closing import CallsInFlight
from tests.loopback import Reply, scripted_server

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio counts cancellations from Python 3.11 on"
)

PROCESSING = {"status": "processing", "id": 1, "eta": 30}


def cancelling() -> int:
    task: Any = asyncio.current_task()  # Any: cancelling() is 3.11's, mypy reads for 3.10
    return int(task.cancelling())


async def test_an_outer_anyio_scope_cancels_through_a_call_and_only_it_swallows() -> None:
    with scripted_server(default=Reply(action="hang")) as server:
        async with AsyncModelsLab(api_key="k" * 20, base_url=server.base_url) as client:
            started = time.monotonic()
            with anyio.move_on_after(0.3) as outer:
                await client.images.wait("1", timeout=30)
            assert outer.cancelled_caught
            assert time.monotonic() - started < 5
            assert cancelling() == 0
            await asyncio.sleep(0)  # no cancellation left pending for what comes next


async def test_a_wait_deadline_ends_the_call_and_leaves_the_task_uncancelled() -> None:
    with scripted_server(default=Reply(action="hang")) as server:
        async with AsyncModelsLab(api_key="k" * 20, base_url=server.base_url) as client:
            started = time.monotonic()
            with pytest.raises(WaitTimeoutError):
                await client.images.wait("1", timeout=0.3)
            assert time.monotonic() - started < 5
            assert cancelling() == 0
            await asyncio.sleep(0)


async def test_a_task_cancelled_from_outside_sees_its_own_cancellation_not_a_closed_client() -> (
    None
):
    with scripted_server(default=Reply(action="hang")) as server:
        async with AsyncModelsLab(api_key="k" * 20, base_url=server.base_url) as client:
            task = asyncio.ensure_future(client.images.wait("1", timeout=30))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client.closed


async def test_closing_and_an_outer_cancel_in_one_turn_end_as_the_outer_scope_says() -> None:
    # Both cancellations land in the same loop turn, which asyncio folds into one
    # CancelledError: the call's scope must not take it for its own alone.
    calls = CallsInFlight()
    loop = asyncio.get_running_loop()
    with anyio.CancelScope() as outer:
        with calls.scope("1"):
            loop.call_soon(outer.cancel)
            loop.call_soon(calls.close)
            await asyncio.sleep(5)
    assert outer.cancelled_caught
    assert cancelling() == 0


async def test_closing_from_within_the_call_itself_ends_it_at_its_next_await() -> None:
    calls = CallsInFlight()

    async def call() -> None:
        with calls.scope("1"):
            calls.close()
            await asyncio.sleep(5)

    with pytest.raises(ClientClosedError):
        await call()
    assert cancelling() == 0


async def test_a_call_closed_from_within_that_ends_before_awaiting_leaves_nothing_pending() -> None:
    calls = CallsInFlight()
    with calls.scope("1"):
        calls.close()  # no await follows inside the call
    await asyncio.sleep(0.01)  # would raise CancelledError had the cancellation leaked
    assert cancelling() == 0


async def test_a_deadline_passing_while_the_call_is_inside_an_anyio_scope_still_ends_it() -> None:
    calls = CallsInFlight()
    started = time.monotonic()

    async def call() -> None:
        with calls.scope("1") as scope:
            scope.set_deadline(0.2, lambda: TimeoutError("deadline"))
            with anyio.CancelScope():  # an inner scope of anyio's, not cancelled itself
                await anyio.sleep(5)

    with pytest.raises(TimeoutError):
        await call()
    assert time.monotonic() - started < 2
    assert cancelling() == 0


async def test_deadlines_of_many_calls_end_each_call_in_its_own_time() -> None:
    calls = CallsInFlight()
    ended: dict[str, float] = {}
    started = time.monotonic()

    async def call(name: str, seconds: float) -> None:
        with calls.scope(name) as scope:
            scope.set_deadline(seconds, lambda: TimeoutError(name))
            await asyncio.sleep(10)

    async def timed(name: str, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            await call(name, seconds)
        ended[name] = time.monotonic() - started

    async with anyio.create_task_group() as tg:
        # Made late-first, so an earlier deadline arrives after the timer is set.
        for name, seconds in [("c", 0.6), ("a", 0.2), ("b", 0.4)]:
            tg.start_soon(timed, name, seconds)
    assert sorted(ended, key=ended.__getitem__) == ["a", "b", "c"]
    assert ended["a"] >= 0.2 and ended["c"] >= 0.6
    assert ended["a"] < ended["b"] - 0.1 < ended["c"] - 0.2  # each at its own, not together
    assert ended["c"] < 3


async def test_finished_calls_leave_no_deadline_and_no_timer_behind() -> None:
    from modelslab_fetch import _closing

    calls = CallsInFlight()
    loop = asyncio.get_running_loop()
    with calls.scope("long") as long_call:
        long_call.set_deadline(600)
        for n in range(5000):  # a batch's waits, each ended long before its deadline
            with calls.scope(str(n)) as call:
                call.set_deadline(600)
                await asyncio.sleep(0)
        held = _closing._deadlines_by_loop[loop]
        assert len(held._heap) < 100  # dropped ones are swept, not kept for 600 s
    assert loop not in _closing._deadlines_by_loop  # nothing keeps the loop alive
    assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


async def test_an_attempt_past_its_deadline_is_a_timeout_and_leaves_the_task_uncancelled() -> None:
    from modelslab_fetch import APITimeoutError

    with scripted_server(default=Reply(action="hang")) as server:
        async with AsyncModelsLab(
            api_key="k" * 20, base_url=server.base_url, timeout=0.3, max_retries=0
        ) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match=r"whole exchange exceeded 0\.3 s"):
                await client.images.fetch("1")
            assert time.monotonic() - started < 3
            assert cancelling() == 0
            await asyncio.sleep(0)


async def test_closing_during_an_attempt_with_a_deadline_is_a_closed_client_not_a_timeout() -> None:
    with scripted_server(default=Reply(action="hang")) as server:
        client = AsyncModelsLab(api_key="k" * 20, base_url=server.base_url, timeout=30)
        task = asyncio.ensure_future(client.images.fetch("1"))
        await asyncio.sleep(0.3)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await task
        assert cancelling() == 0


async def test_a_wait_ends_at_its_deadline_counted_from_its_start_when_its_first_poll_fails() -> (
    None
):
    # A first poll admitted at once ends by its own deadline (2 s here), so the wait's
    # (3.5 s) needs no timer during it; once it has failed, the rest of the wait's time
    # is counted from the wait's start, not from the end of that poll: the second poll,
    # hung too, is cut at 3.5 s (counted from its end, it would run to its own 2 s).
    with scripted_server(default=Reply(action="hang")) as server:
        async with AsyncModelsLab(
            api_key="k" * 20, base_url=server.base_url, timeout=2.0
        ) as client:
            started = time.monotonic()
            with pytest.raises(WaitTimeoutError):
                await client.images.wait("1", timeout=3.5)
            took = time.monotonic() - started
    assert 3.4 <= took < 4.2
    assert cancelling() == 0


async def test_batches_stopped_through_your_httpx_client_give_every_connection_back() -> None:
    # httpx's pool hands a connection back in a section shielded by anyio: a call through
    # httpx must run in anyio's scope, which waits for it (asyncio's own would cut it
    # short, and the connection would stay checked out of the pool for good).
    import httpx

    finished = {"status": "success", "id": 1, "output": ["https://x.test/y.png"]}
    refused = Reply(status=401, body={"status": "error", "message": "Invalid API key"})
    with scripted_server(default=Reply(body=finished)) as server:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=8)) as http_client:
            with anyio.fail_after(60):
                for round_ in range(12):  # each stop cut requests in flight
                    server.script(f"bad{round_}", refused)
                    ids = [*map(str, range(40)), f"bad{round_}", *map(str, range(40, 80))]
                    async with AsyncModelsLab(
                        api_key="k" * 20,
                        base_url=server.base_url,
                        http_client=http_client,
                        max_retries=0,
                        max_concurrency=8,
                    ) as client:
                        async for _ in client.images.fetch_many(ids, concurrency=8):
                            pass
                async with AsyncModelsLab(
                    api_key="k" * 20, base_url=server.base_url, http_client=http_client
                ) as client:
                    outcomes = [o async for o in client.images.fetch_many(map(str, range(20)))]
            assert all(outcome.ok for outcome in outcomes)
            pool = http_client._transport._pool  # type: ignore[attr-defined]
            assert not [c for c in pool.connections if "ACTIVE" in repr(c)]
