"""`on_event`: every request, answer, failure, retry and pause of a client, as typed events.

The events are what a user's own progress bar or metrics read (and the command line's
live view): each request sent ends in an answer or a failure, each retry says when and
why, each rate-limit pause how long; a callback that raises never breaks a request, and
a client without one makes no event at all.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    AsyncModelsLab,
    ClientEvent,
    ClientPaused,
    ConfigurationError,
    ModelsLab,
    RateLimitError,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from tests.conftest import API_KEY, AT_ETA, BASE_URL, IMAGES_URL, FakeClock, never_answer
from tests.loopback import Reply, scripted_server

OK = {"status": "success", "id": 7, "output": ["https://cdn.example/7.png"]}
PROCESSING = {"status": "processing", "id": 7, "eta": 4, "output": []}
BUSY = httpx.Response(503, json={"message": "busy"})


def recording_client(clock: FakeClock, **options: Any) -> tuple[AsyncModelsLab, list[ClientEvent]]:
    events: list[ClientEvent] = []
    client = AsyncModelsLab(
        api_key=API_KEY,
        base_url=BASE_URL,
        clock=clock,
        poll_policy=AT_ETA,
        on_event=events.append,
        **options,
    )
    return client, events


def kinds(events: list[ClientEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


async def test_a_fetch_retried_once_reports_each_request_its_answer_and_the_retry(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [BUSY, httpx.Response(200, json=OK)]
    client, events = recording_client(clock)
    async with client:
        await client.images.fetch(7)
    assert kinds(events) == [
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    sent, busy, retry, _again, answered = events
    assert sent == RequestSent("7", IMAGES_URL)
    assert isinstance(busy, ResponseReceived) and busy.status_code == 503
    assert isinstance(busy.error, APIStatusError) and busy.error.status_code == 503
    assert isinstance(retry, RetryScheduled)
    assert (retry.request_id, retry.attempt, retry.error) == ("7", 1, busy.error)
    assert retry.delay == pytest.approx(clock.sleeps[0])  # what the client then slept
    assert isinstance(answered, ResponseReceived)
    assert (answered.status_code, answered.error, answered.url) == (200, None, IMAGES_URL)


async def test_elapsed_is_measured_on_the_clients_clock(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        clock.time += 2.5  # the answer takes 2.5 s on the client's clock
        return httpx.Response(200, json=OK)

    router.post(IMAGES_URL).side_effect = slow
    client, events = recording_client(clock)
    async with client:
        await client.images.fetch(7)
    answered = events[-1]
    assert isinstance(answered, ResponseReceived)
    assert answered.elapsed == pytest.approx(2.5)


async def test_a_request_with_no_answer_reports_its_error(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = httpx.ConnectError("connection refused")
    client, events = recording_client(clock, max_retries=1)
    async with client:
        with pytest.raises(APIConnectionError) as raised:
            await client.images.fetch(7)
    assert kinds(events) == [
        "RequestSent",
        "RequestFailed",
        "RetryScheduled",
        "RequestSent",
        "RequestFailed",
    ]
    failed = events[-1]
    assert isinstance(failed, RequestFailed)
    assert failed.error is raised.value and failed.url == IMAGES_URL


async def test_wait_reports_a_failed_poll_as_a_retry_and_an_unfinished_one_not(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).side_effect = [
        httpx.Response(200, json=PROCESSING),
        BUSY,
        httpx.Response(200, json=OK),
    ]
    client, events = recording_client(clock)
    async with client:
        await client.images.wait(7)
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert len(retries) == 1  # the 503; "still processing" is a poll, not a retry
    [retry] = retries
    assert retry.attempt == 2  # the second poll failed
    assert isinstance(retry.error, APIStatusError) and retry.error.status_code == 503
    assert retry.delay > 0
    answers = [event.status_code for event in events if isinstance(event, ResponseReceived)]
    assert answers == [200, 503, 200]


async def test_a_rate_limit_reports_the_client_wide_pause_and_a_retry_that_waits_it(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    limited = httpx.Response(429, json={"message": "Too Many"}, headers={"Retry-After": "9"})
    router.post(IMAGES_URL).side_effect = [limited, httpx.Response(200, json=OK)]
    client, events = recording_client(clock)
    async with client:
        await client.images.fetch(7)
    assert kinds(events) == [
        "RequestSent",
        "ResponseReceived",
        "ClientPaused",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    paused, retry = events[2], events[3]
    assert isinstance(paused, ClientPaused) and paused.seconds == 9.0
    assert isinstance(paused.error, RateLimitError) and paused.error.retry_after == 9.0
    assert isinstance(retry, RetryScheduled)
    # The retry's own sleep is nothing: it waits for the pause, and says so.
    assert retry.delay == pytest.approx(9.0)
    assert clock.elapsed == pytest.approx(9.0)


async def test_a_callback_that_raises_never_breaks_a_request_and_is_logged_once(
    router: respx.MockRouter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    router.post(IMAGES_URL).side_effect = [BUSY, httpx.Response(200, json=OK)]
    calls = []

    def broken(event: ClientEvent) -> None:
        calls.append(event)
        raise ZeroDivisionError("a bug in the user's callback")

    caplog.set_level(logging.DEBUG, logger="modelslab_fetch")
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=BASE_URL, clock=clock, on_event=broken
    ) as client:
        result = await client.images.fetch(7)
    assert result.succeeded
    assert len(calls) == 5  # every event was still offered
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "on_event" in r.msg]
    assert len(warnings) == 1
    assert warnings[0].exc_info is not None  # with the callback's traceback
    assert "ZeroDivisionError" in caplog.text
    assert API_KEY not in caplog.text


def test_on_event_must_be_a_plain_function() -> None:
    async def coroutine_function(event: ClientEvent) -> None:
        pass

    with pytest.raises(ConfigurationError, match="plain function"):
        AsyncModelsLab(api_key="k", on_event=coroutine_function)
    with pytest.raises(ConfigurationError, match="on_event must be a function"):
        AsyncModelsLab(api_key="k", on_event="print")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="plain function"):
        ModelsLab(api_key="k", on_event=coroutine_function)


async def test_a_client_without_on_event_makes_no_event(
    router: respx.MockRouter, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_events(*args: object, **kwargs: object) -> None:
        raise AssertionError("an event was made for a client that asked for none")

    from modelslab_fetch._http import _transport
    from modelslab_fetch._jobs import _polling

    for name in ("RequestSent", "ResponseReceived", "RequestFailed", "RetryScheduled"):
        monkeypatch.setattr(_transport, name, no_events)
    monkeypatch.setattr(_transport, "ClientPaused", no_events)
    monkeypatch.setattr(_polling, "RetryScheduled", no_events)
    limited = httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": "1"})
    router.post(IMAGES_URL).side_effect = [
        limited,
        httpx.Response(200, json=OK),
        BUSY,
        httpx.Response(200, json=PROCESSING),
        httpx.Response(200, json=OK),
    ]
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=BASE_URL, clock=clock, poll_policy=AT_ETA
    ) as client:
        assert (await client.images.fetch(7)).succeeded  # a pause, then a retry
        assert (await client.images.wait(7)).succeeded  # a failed poll polled again


def test_the_blocking_client_reports_events_on_its_own_loop_thread() -> None:
    with scripted_server() as server:
        server.script("7", Reply(503, {"message": "busy"}), Reply(200, OK))
        threads: set[int] = set()
        events: list[ClientEvent] = []

        def record(event: ClientEvent) -> None:
            threads.add(threading.get_ident())
            events.append(event)

        with ModelsLab(api_key="k", base_url=server.base_url, on_event=record) as client:
            assert client.images.fetch(7).succeeded
    assert kinds(events) == [
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert all(event.url.startswith(server.base_url) for event in events if hasattr(event, "url"))


# --------------------------------------------------------------------- requests in flight


async def test_requests_in_flight_counts_the_requests_awaiting_an_answer(
    router: respx.MockRouter,
) -> None:
    router.post(IMAGES_URL).side_effect = never_answer
    async with AsyncModelsLab(api_key=API_KEY, base_url=BASE_URL) as client:
        assert client.requests_in_flight == 0
        async with anyio.create_task_group() as tg:
            for request_id in (1, 2, 3):
                tg.start_soon(client.images.fetch, request_id)
            with anyio.fail_after(5):
                while client.requests_in_flight < 3:  # noqa: ASYNC110 - a count, no event
                    await anyio.sleep(0.01)
            assert client.with_options(timeout=5).requests_in_flight == 3  # shared
            tg.cancel_scope.cancel()
        assert client.requests_in_flight == 0


def test_the_blocking_client_counts_its_requests_in_flight_from_any_thread() -> None:
    with scripted_server() as server:
        server.script("7", Reply(action="hang"))
        with ModelsLab(api_key="k", base_url=server.base_url, max_retries=0, timeout=30) as client:
            assert client.requests_in_flight == 0
            caller = threading.Thread(target=_fetch_ignoring_errors, args=(client,))
            caller.start()
            try:
                deadline = threading.Event()
                for _ in range(500):
                    if client.requests_in_flight == 1:
                        break
                    deadline.wait(0.01)
                assert client.requests_in_flight == 1
            finally:
                server.stopping.set()  # the server lets go: the request fails
                caller.join(10)
            assert client.requests_in_flight == 0


def _fetch_ignoring_errors(client: ModelsLab) -> None:
    with contextlib.suppress(APIConnectionError):
        client.images.fetch(7)
