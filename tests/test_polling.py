"""wait(): the eta-driven schedule, the deadline, failures, and transient trouble in between."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    AsyncModelsLab,
    AuthenticationError,
    ConfigurationError,
    FetchEndpoint,
    FetchResult,
    GenerationFailedError,
    PollPolicy,
    Status,
    WaitTimeoutError,
)
from tests.backends import both_backends
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL, FakeClock, never_answer

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends


def processing(eta: Any = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"status": "processing", "id": 7, **extra}
    if eta is not None:
        body["eta"] = eta
    return httpx.Response(200, json=body)


def success() -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "id": 7, "output": ["https://x/0.png"]})


def answers(*responses: httpx.Response) -> Iterator[httpx.Response]:
    yield from responses


async def test_polls_follow_the_servers_eta(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [processing(5), processing("3.5"), processing(1), success()]
    result = await client.images.wait(7)
    assert result.status is Status.SUCCESS
    assert clock.sleeps == [5.0, 3.5, 1.0]
    assert route.call_count == 4


async def test_eta_is_bounded_below_and_above(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [processing(0.01), processing(900), success()]
    await client.images.wait(7)
    assert clock.sleeps == [0.5, 30.0]


@pytest.mark.parametrize(
    ("eta", "delay"),
    [(0.1, 0.3), (1.0, 1.0), (2.8, 2.8), (4.0, 3.7), (8.0, 6.7), (100.0, 30.0)],
)
def test_the_default_policy_polls_on_time_for_short_etas_and_early_for_long(
    eta: float, delay: float
) -> None:
    assert PollPolicy().delay_after_eta(eta) == pytest.approx(delay)


async def test_eta_factor_scales_the_wait(clock: FakeClock, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).side_effect = [processing(10), success()]
    policy = PollPolicy(eta_factor=0.8, eta_offset=0)
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, poll_policy=policy) as client:
        await client.images.wait(7)
    assert clock.sleeps == [8.0]


async def test_without_eta_polls_back_off_exponentially_with_jitter(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [processing() for _ in range(6)] + [success()]
    await client.images.wait(7, timeout=None)
    policy = PollPolicy()
    expected_floors = [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert len(clock.sleeps) == len(expected_floors)
    for pause, floor in zip(clock.sleeps, expected_floors, strict=True):
        assert floor <= pause <= floor + policy.backoff_initial


async def test_the_deadline_ends_the_wait_at_the_deadline_with_the_last_result(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=processing(5, messege="queued"))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.images.wait(7, timeout=12)
    error = caught.value
    assert clock.elapsed == pytest.approx(12.0)
    # polls at 0, 5, 10 and a last one at deadline - final_poll_lead, none after
    assert clock.sleeps[:3] == [5.0, 5.0, pytest.approx(1.5)]
    assert route.call_count == 4
    assert error.result is not None
    assert error.result.status is Status.PROCESSING
    assert error.result.message == "queued"
    assert error.request_id == "7"
    assert error.timeout == 12
    assert isinstance(error, TimeoutError)
    assert "12 s" in str(error)


async def test_a_job_finishing_on_the_last_poll_is_returned(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [processing(30), success()]
    result = await client.images.wait(7, timeout=10)
    assert result.succeeded
    assert clock.sleeps == [pytest.approx(9.5)]


async def test_a_deadline_shorter_than_the_final_lead_still_polls_once(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=processing(1))
    with pytest.raises(WaitTimeoutError):
        await client.images.wait(7, timeout=0.2)
    assert route.call_count == 1
    assert clock.elapsed == pytest.approx(0.2)


@pytest.mark.parametrize("status", ["failed", "error"])
async def test_failed_and_error_raise_generation_failed(
    status: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).side_effect = [
        processing(1),
        httpx.Response(200, json={"status": status, "id": 7, "messege": "GPU fell over"}),
    ]
    with pytest.raises(GenerationFailedError) as caught:
        await client.images.wait(7)
    assert caught.value.result.status is Status(status)
    assert caught.value.result.message == "GPU fell over"
    assert caught.value.request_id == "7"
    assert "GPU fell over" in str(caught.value)


async def test_failure_without_a_message_says_so(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).respond(json={"status": "failed", "id": 7})
    with pytest.raises(GenerationFailedError, match="no reason given"):
        await client.images.wait(7)


async def test_transient_trouble_longer_than_transport_retries_is_polled_through(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    outage = [httpx.Response(503, html="<html>down</html>")] * (client.max_retries + 1) * 2
    route = router.post(IMAGES_URL)
    route.side_effect = [processing(2), *outage, success()]
    assert (await client.images.wait(7)).succeeded
    assert route.call_count == 2 + len(outage)


async def test_a_rate_limit_during_wait_honours_retry_after(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(429, headers={"Retry-After": "4"}),
        success(),
    ]
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_retries=0) as client:
        await client.images.wait(7)
    assert clock.sleeps == [4.0]


async def test_an_outage_until_the_deadline_times_out_with_the_cause(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [processing(2)] + [httpx.ConnectError("down")] * 500
    with pytest.raises(WaitTimeoutError) as caught:
        await client.images.wait(7, timeout=60)
    assert caught.value.result is not None
    assert caught.value.result.status is Status.PROCESSING
    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert clock.elapsed == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("response", "error_class"),
    [
        (httpx.Response(404, json={"message": "nope"}), APIStatusError),
        (httpx.Response(401), AuthenticationError),
        (
            httpx.Response(200, json={"status": "error", "message": "Invalid Api Key"}),
            AuthenticationError,
        ),
    ],
)
async def test_permanent_errors_end_the_wait_at_once(
    response: httpx.Response,
    error_class: type[Exception],
    client: AsyncModelsLab,
    router: respx.MockRouter,
    clock: FakeClock,
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [processing(3), response]
    with pytest.raises(error_class):
        await client.images.wait(7)
    assert route.call_count == 2
    assert clock.sleeps == [3.0]


async def test_no_timeout_waits_as_long_as_it_takes(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [processing(30)] * 100 + [success()]
    assert (await client.images.wait(7, timeout=None)).succeeded
    assert clock.elapsed == pytest.approx(3000.0)


@pytest.mark.parametrize("timeout", [0, -1, "60", True, float("nan")])
async def test_bad_timeouts_are_refused_before_polling(
    timeout: object, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=success())
    with pytest.raises(ConfigurationError, match="timeout"):
        await client.images.wait(7, timeout=timeout)  # type: ignore[arg-type]
    assert not route.called


async def test_a_hung_poll_is_cut_off_at_the_deadline(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=never_answer)
    with anyio.fail_after(5):  # a safety net: the SDK's own deadline must fire long before
        with pytest.raises(WaitTimeoutError) as caught:
            await client.images.wait(7, timeout=0.05)
    assert caught.value.result is None
    assert "no poll completed" in str(caught.value)


async def test_unknown_status_is_not_finished_and_logged_once(
    client: AsyncModelsLab,
    router: respx.MockRouter,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queued = httpx.Response(200, json={"status": "in_queue_xyz", "id": 7, "eta": 1})
    router.post(IMAGES_URL).side_effect = [queued, queued, queued, success()]
    with caplog.at_level(logging.WARNING, logger="modelslab_fetch"):
        assert (await client.images.wait(7)).succeeded
    warnings = [r for r in caplog.records if "in_queue_xyz" in r.getMessage()]
    assert len(warnings) == 1
    assert "not finished" in warnings[0].getMessage()


def test_a_server_inventing_statuses_is_warned_about_64_times_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    row: FetchEndpoint[FetchResult] = FetchEndpoint("/v6/images/fetch", id_field="request_id")
    with caplog.at_level(logging.WARNING, logger="modelslab_fetch"):
        for n in range(100):
            body = {"status": f"invented-{n}", "id": 1}
            assert not row.parse(body, request_id="1").finished
    assert len([r for r in caplog.records if "invented-" in r.getMessage()]) == 64


async def test_super_resolution_wait_polls_its_own_endpoint(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(f"{BASE_URL}/v1/enterprise/super_resolution/fetch/12202888")
    route.side_effect = [processing(2), success()]
    result = await client.enterprise.super_resolution.wait("12202888", timeout=600)
    assert result.succeeded
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval": -1},
        {"max_interval": float("inf")},
        {"eta_factor": "1"},
        {"eta_error": -0.1},
        {"eta_offset": float("nan")},
        {"min_interval": 5, "max_interval": 1},
        {"backoff_max": True},  # a bool is no number of seconds, as everywhere else
    ],
)
def test_bad_poll_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="PollPolicy"):
        PollPolicy(**kwargs)


def test_the_default_policy_learns_and_setting_an_eta_knob_asks_for_the_formula() -> None:
    assert PollPolicy().learns
    assert not PollPolicy(eta_factor=0.8).learns
    assert not PollPolicy(eta_offset=0.0).learns
    # The unset knob keeps its old default in the formula.
    assert PollPolicy(eta_factor=1.0).delay_after_eta(4.0) == pytest.approx(4.0)
    assert PollPolicy(eta_offset=0.0).delay_after_eta(4.0) == pytest.approx(3.0)


async def test_the_default_schedule_lands_at_readiness_against_a_biased_server(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    # The server under-estimates this job by 40% in every answer: today's formula would
    # poll early again and again; the learning schedule finds the job ready on time.
    ready_at = clock.now() + 8.0

    def answer(request: httpx.Request) -> httpx.Response:
        remaining = ready_at - clock.now()
        return success() if remaining <= 0 else processing(round(remaining * 0.6, 2))

    route = router.post(IMAGES_URL).mock(side_effect=answer)
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        assert (await client.images.wait(7)).succeeded
    assert route.call_count <= 4
    assert 0 <= clock.now() - ready_at <= 0.1


async def test_the_default_schedule_backs_off_without_etas(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).side_effect = [processing(), processing(), success()]
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        assert (await client.images.wait(7)).succeeded
    assert 1.0 <= clock.sleeps[0] <= 2.0
    assert 2.0 <= clock.sleeps[1] <= 3.0


async def test_the_default_schedule_keeps_the_deadline(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=processing(5))
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        with pytest.raises(WaitTimeoutError):
            await client.images.wait(7, timeout=12)
    assert clock.elapsed == pytest.approx(12.0)
    # Polls spaced by at least min_interval, but for the one clipped to the final poll
    # (deadline - final_poll_lead) and the wait from it to the deadline.
    *spaced, clipped, to_deadline = clock.sleeps
    assert all(PollPolicy().min_interval <= pause for pause in spaced)
    assert sum(spaced) + clipped == pytest.approx(12.0 - PollPolicy().final_poll_lead)
    assert to_deadline == pytest.approx(PollPolicy().final_poll_lead)
    assert route.call_count == len(spaced) + 2


def test_a_deadline_passing_as_the_last_poll_answers_ends_the_wait_with_one_error() -> None:
    # The last poll starts early so that its answer lands near the deadline: should the
    # call's deadline fire in the same turn of the loop (a busy loop), the wait still ends
    # with the one timeout the schedule made, reported once, not a second one.
    import asyncio
    import time

    from modelslab_fetch import FetchResult, WaitTimeoutError
    from modelslab_fetch._clock import EventLoopClock
    from modelslab_fetch._closing import CallsInFlight
    from modelslab_fetch._jobs._polling import PollPolicy, wait_until_finished

    async def main() -> tuple[BaseException | None, list[Exception]]:
        loop = asyncio.get_running_loop()
        updates: list[Any] = []
        raised: BaseException | None = None
        try:
            with CallsInFlight().scope("1") as call:

                async def poll() -> FetchResult:
                    deadline = call._scope.deadline
                    answered = loop.create_future()
                    loop.call_at(deadline - 0.2, time.sleep, 0.3)  # the loop is busy...
                    loop.call_at(deadline - 0.01, answered.set_result, None)  # ...past both
                    await answered
                    body = {"status": "processing", "id": "1", "eta": 30}
                    return FetchResult.from_body(body, request_id="1")

                await wait_until_finished(
                    poll,
                    request_id="1",
                    timeout=1.0,
                    policy=PollPolicy(),
                    clock=EventLoopClock(),
                    on_update=updates.append,
                    call=call,
                )
        except WaitTimeoutError as exc:
            raised = exc
        return raised, [u.error for u in updates if isinstance(u.error, WaitTimeoutError)]

    raised, reported = asyncio.run(main())
    assert isinstance(raised, WaitTimeoutError)
    assert reported == [raised]
