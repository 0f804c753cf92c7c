"""`on_update`: every poll of a wait reported, with its status, eta, count and next poll."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from modelslab_fetch import APIConnectionError, FetchResult, PollPolicy, Status, WaitTimeoutError
from modelslab_fetch._jobs._polling import wait_until_finished
from modelslab_fetch._jobs._updates import PollUpdate
from tests.backends import both_backends
from tests.conftest import FakeClock

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

AT_ETA = PollPolicy(eta_factor=1.0, eta_offset=0.0, min_interval=0.5)


def answers(*bodies: dict[str, object] | Exception) -> Callable[[], Awaitable[FetchResult]]:
    queue = list(bodies)

    async def poll() -> FetchResult:
        body = queue.pop(0)
        if isinstance(body, Exception):
            raise body
        return FetchResult.from_body(body, request_id="9")

    return poll


async def test_each_poll_is_reported_with_its_eta_count_and_next_poll(clock: FakeClock) -> None:
    updates: list[PollUpdate] = []
    poll = answers(
        {"status": "processing", "eta": 20},
        {"status": "processing", "eta": 5},
        {"status": "success", "output": ["https://a/0.png"]},
    )
    result = await wait_until_finished(
        poll, request_id="9", timeout=600, policy=AT_ETA, clock=clock, on_update=updates.append
    )
    assert result.succeeded
    assert [(u.polls, u.status, u.eta, u.next_poll_in) for u in updates] == [
        (1, Status.PROCESSING, 20.0, 20.0),
        (2, Status.PROCESSING, 5.0, 5.0),
        (3, Status.SUCCESS, None, None),
    ]
    assert [u.elapsed for u in updates] == [0.0, 20.0, 25.0]
    assert updates[-1].finished and updates[-1].result is result


async def test_a_transient_error_is_reported_and_polled_through(clock: FakeClock) -> None:
    updates: list[PollUpdate] = []
    poll = answers(APIConnectionError("connection refused"), {"status": "success"})
    await wait_until_finished(
        poll, request_id="9", timeout=600, policy=AT_ETA, clock=clock, on_update=updates.append
    )
    first, last = updates
    assert first.status is None and isinstance(first.error, APIConnectionError)
    assert first.next_poll_in is not None and first.next_poll_in > 0
    assert last.status is Status.SUCCESS and last.finished


async def test_the_end_of_a_wait_is_reported_whatever_it_is(clock: FakeClock) -> None:
    updates: list[PollUpdate] = []
    poll = answers(*[{"status": "processing", "eta": 30}] * 10)
    with pytest.raises(WaitTimeoutError):
        await wait_until_finished(
            poll, request_id="9", timeout=50, policy=AT_ETA, clock=clock, on_update=updates.append
        )
    assert updates[-1].finished
    assert isinstance(updates[-1].error, WaitTimeoutError)


async def test_a_failing_callback_ends_the_wait(clock: FakeClock) -> None:
    def broken(update: PollUpdate) -> None:
        raise RuntimeError("the app's bug")

    poll = answers({"status": "processing", "eta": 1}, {"status": "success"})
    with pytest.raises(RuntimeError, match="the app's bug"):
        await wait_until_finished(
            poll, request_id="9", timeout=60, policy=AT_ETA, clock=clock, on_update=broken
        )
