"""Rate limits as ModelsLab really sends them: waited out, polled through, never a failed job.

Queue limits come as HTTP 429 with the wait in the JSON body (no header), sometimes with
`Retry-After` or `X-RateLimit-Reset`, and older endpoints answer HTTP 200 with a "Rate
limit exceeded" body. The client-wide pause lasts what the server stated; without a stated
wait it grows. `wait()`/`wait_many()` poll through every form until their deadline.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    AsyncModelsLab,
    GenerationFailedError,
    RateLimitError,
    WaitTimeoutError,
)
from modelslab_fetch._http._transport import MAX_RATE_LIMIT_PAUSE, RATE_LIMIT_PAUSE
from tests.backends import both_backends, collect
from tests.conftest import IMAGES_URL, FakeClock

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

OK = {"status": "success", "id": 13443927, "output": ["https://cdn.example/0.png"]}
PROCESSING = {"status": "processing", "id": 13443927, "eta": 5, "output": []}
QUEUE_LIMIT = {
    "status": "error",
    "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
    "retry_after": 30,
}
SPAM_FILTER = {
    "status": "error",
    "message": "Rate limit exceeded",
    "tips": "You have exceeded the rate limit, please wait for 30 seconds and try again",
}


def stated(form: str, seconds: int) -> httpx.Response:
    """A 429 (or the old 200) stating a wait of `seconds` in the given form."""
    if form == "body retry_after":
        return httpx.Response(429, json={**QUEUE_LIMIT, "retry_after": seconds})
    if form == "Retry-After seconds":
        return httpx.Response(
            429, json={"message": "Too Many Requests"}, headers={"Retry-After": str(seconds)}
        )
    if form == "X-RateLimit-Reset":
        reset = str(int(time.time()) + seconds)
        return httpx.Response(
            429, json={"message": "Too Many Requests"}, headers={"X-RateLimit-Reset": reset}
        )
    assert form == "200 spam filter"
    tips = f"please wait for {seconds} seconds and try again"
    return httpx.Response(200, json={**SPAM_FILTER, "tips": tips})


FORMS = ["body retry_after", "Retry-After seconds", "X-RateLimit-Reset", "200 spam filter"]


@pytest.mark.parametrize("form", FORMS)
async def test_fetch_waits_the_stated_time_then_succeeds(
    form: str, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [stated(form, 30), httpx.Response(200, json=OK)]
    result = await client.images.fetch(1)
    assert result.succeeded
    # The client-wide pause is what waits; nothing else sleeps a fixed second.
    assert clock.elapsed == pytest.approx(30, abs=1.5)


@pytest.mark.parametrize("form", FORMS)
async def test_fetch_raises_rate_limit_error_with_the_stated_wait_once_retries_are_spent(
    form: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = lambda request: stated(form, 20)
    with pytest.raises(RateLimitError) as caught:
        await client.images.fetch(1)
    assert caught.value.retry_after == pytest.approx(20, abs=1.5)
    assert caught.value.request_id == "1"
    assert route.call_count == client.max_retries + 1


async def test_a_stated_wait_beyond_a_minute_is_raised_by_fetch_at_once(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=stated("body retry_after", 600))
    with pytest.raises(RateLimitError, match="600 s"):
        await client.images.fetch(1)
    assert route.call_count == 1
    assert clock.sleeps == []


async def test_without_a_stated_wait_pauses_grow_with_jitter(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.Response(429)] * 3 + [httpx.Response(200, json=OK)]
    assert (await client.images.fetch(1)).succeeded
    pauses = clock.sleeps
    assert len(pauses) == 3
    for number, pause in enumerate(pauses):
        step = min(RATE_LIMIT_PAUSE * 2**number, MAX_RATE_LIMIT_PAUSE)
        assert step <= pause <= step * 1.25


async def test_a_success_resets_the_growth(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [
        httpx.Response(429),
        httpx.Response(429),
        httpx.Response(200, json=OK),
        httpx.Response(429),
        httpx.Response(200, json=OK),
    ]
    await client.images.fetch(1)
    await client.images.fetch(1)
    assert clock.sleeps[2] <= RATE_LIMIT_PAUSE * 1.25


async def test_a_burst_of_rate_limits_answered_together_pauses_once(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    # Eight requests in flight all answered 429 without a wait: one rate limit, one pause,
    # not eight doublings.
    started = anyio.Event()
    answered = 0

    async def busy(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        answered += 1
        if answered >= 8:
            started.set()
        await started.wait()
        return httpx.Response(429) if answered <= 8 else httpx.Response(200, json=OK)

    router.post(IMAGES_URL).side_effect = busy
    async with (
        AsyncModelsLab(api_key="k", clock=clock, max_retries=1) as client,
        anyio.create_task_group() as tg,
    ):
        for rid in range(8):
            tg.start_soon(client.images.fetch, rid)
    assert clock.elapsed <= RATE_LIMIT_PAUSE * 1.25 + 0.01


@pytest.mark.parametrize("form", FORMS)
async def test_wait_polls_through_rate_limits_and_never_calls_the_job_failed(
    form: str, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(200, json=PROCESSING),
        stated(form, 30),
        stated(form, 30),
        httpx.Response(200, json=OK),
    ]
    result = await client.images.wait(13443927, timeout=600)
    assert result.succeeded
    assert clock.elapsed >= 5 + 30 + 30 - 3


async def test_wait_polls_through_a_stated_wait_longer_than_fetch_would_take(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [
        stated("body retry_after", 120),
        httpx.Response(200, json=OK),
    ]
    assert (await client.images.wait(1, timeout=600)).succeeded
    assert clock.elapsed == pytest.approx(120, abs=1)


async def test_wait_reports_a_timeout_not_a_failure_when_rate_limited_to_the_deadline(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).mock(return_value=stated("200 spam filter", 30))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.images.wait(1, timeout=100)
    assert not isinstance(caught.value, GenerationFailedError)
    assert isinstance(caught.value.__cause__, RateLimitError)


@pytest.mark.parametrize("form", ["body retry_after", "200 spam filter"])
async def test_wait_many_polls_through_rate_limits(
    form: str, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    answers: dict[str, list[httpx.Response]] = {
        str(rid): [stated(form, 30), httpx.Response(200, json={**OK, "id": rid})]
        for rid in range(20)
    }

    def answer(request: httpx.Request) -> httpx.Response:
        import json

        rid = str(json.loads(request.content)["request_id"])
        queue = answers[rid]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    router.post(IMAGES_URL).side_effect = answer
    outcomes = await collect(client.images.wait_many(range(20), timeout=600))
    assert len(outcomes) == 20
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if not o.ok]


async def test_the_pause_is_client_wide(clock: FakeClock, router: respx.MockRouter) -> None:
    # One request is told to wait 30 s; another started meanwhile waits with it.
    seen: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now())
        if len(seen) == 1:
            return stated("body retry_after", 30)
        return httpx.Response(200, json=OK)

    router.post(IMAGES_URL).side_effect = answer
    async with AsyncModelsLab(api_key="k", clock=clock) as client:
        await client.images.fetch(1)
        await client.images.fetch(2)
    assert seen[1] - seen[0] >= 30
    assert seen[2] - seen[0] >= 30


async def test_a_deadline_that_falls_in_a_client_wide_pause_has_the_rate_limit_as_cause(
    router: respx.MockRouter,
) -> None:
    # Real time: the pause (5 s, as stated) outlasts the wait's 1 s deadline, so the
    # deadline cuts the wait while it sits in the client-wide pause, not in a poll.
    router.post(IMAGES_URL).side_effect = [
        stated("Retry-After seconds", 5),
        httpx.Response(200, json=OK),
    ]
    async with AsyncModelsLab(api_key="k") as client:
        started = time.monotonic()
        with anyio.fail_after(4), pytest.raises(WaitTimeoutError) as caught:
            await client.images.wait(1, timeout=1.0)
    assert time.monotonic() - started == pytest.approx(1.0, abs=0.5)
    assert isinstance(caught.value.__cause__, RateLimitError)
    assert caught.value.__cause__.retry_after == 5
    assert "no poll completed" not in str(caught.value)
    assert "RateLimitError" in str(caught.value)


class SteppedClock:
    """Time moves only when the test says so; sleepers wake once it has reached them."""

    def __init__(self) -> None:
        self.time = 0.0
        self._moved = anyio.Event()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        wake = self.time + seconds
        while self.time < wake:
            await self._moved.wait()

    def advance_to(self, time: float) -> None:
        self.time = time
        self._moved.set()
        self._moved = anyio.Event()


@pytest.mark.anyio
async def test_a_pause_that_begins_while_a_request_waits_for_its_rate_turn_holds_it() -> None:
    from modelslab_fetch._http._traffic import TrafficControl

    clock = SteppedClock()
    traffic = TrafficControl(max_concurrency=4, max_rate=2, clock=clock)
    admitted: list[float] = []

    async def request() -> None:
        async with traffic:
            admitted.append(clock.now())

    await request()  # the first takes its turn at once; the next is due at 0.5 s
    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await anyio.wait_all_tasks_blocked()  # asleep until its turn
        traffic.pause(1.0)  # a 429 elsewhere, while it sleeps: no request until 1.0 s
        for time in (0.5, 0.75, 1.0):
            clock.advance_to(time)
            await anyio.wait_all_tasks_blocked()
            if time < 1.0:
                assert admitted == [0.0], f"sent at {time} s, inside the pause"
    assert admitted == [0.0, 1.0]
