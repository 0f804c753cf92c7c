"""The public API used as users use it, checked by `mypy --strict` (nox -s typecheck).

Not a test to run: if the public types lose precision (an `Any` creeping into a result,
a method becoming untyped), `assert_type` below fails the type check.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from typing_extensions import assert_type

from modelslab_fetch import (
    AsyncModelsLab,
    Batch,
    ClientEvent,
    ClientPaused,
    Downloaded,
    EventCallback,
    Failure,
    FetchResult,
    GenerationFailedError,
    ModelsLab,
    ModelsLabError,
    Outcome,
    PollPolicy,
    Progress,
    RateLimitError,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    Status,
    Success,
    SyncBatch,
    ThreeDResult,
    VoiceResult,
    WaitTimeoutError,
    normalize_request_id,
)
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, in_process_client


async def async_usage() -> None:
    async with AsyncModelsLab(
        api_key="key",
        base_url="https://modelslab.com/api",
        timeout=httpx.Timeout(10.0),
        max_retries=2,
        max_concurrency=16,
        max_requests_per_second=10.0,
        poll_policy=PollPolicy(min_interval=1.0),
    ) as client:
        result = await client.images.fetch(13443927)
        assert_type(result, FetchResult)
        assert_type(result.status, Status)
        assert_type(result.id, str)
        assert_type(result.output, list[str])
        assert_type(result.eta, float | None)
        assert_type(result.message, str | None)
        waited = await client.enterprise.super_resolution.wait("12202888", timeout=None)
        assert_type(waited, FetchResult)

        batch = client.images.wait_many(["1", 2], concurrency=8, ordered=True)
        assert_type(batch, Batch[FetchResult])
        async with batch:
            async for outcome in batch:
                assert_type(outcome, Success[FetchResult] | Failure[FetchResult])
                assert_type(outcome.result, FetchResult | None)
                assert_type(outcome.error, Exception | None)
                as_base: Outcome[FetchResult] = outcome  # still an Outcome
                assert_type(as_base.ok, bool)
                if outcome.ok:  # narrows: a success has its result
                    assert_type(outcome.result, FetchResult)
                    assert_type(outcome.error, None)
                else:
                    assert_type(outcome.error, Exception)
                    assert_type(outcome.result, None)

        def on_progress(progress: Progress) -> None:
            assert_type(progress.done, int)
            assert_type(progress.total, int | None)

        async for fetched in client.images.fetch_many(range(3), on_progress=on_progress):
            assert_type(fetched.index, int)

        paths = await client.download(result, Path("images"))
        assert_type(paths, list[Path])
        many = await client.download_many([result], "images")
        assert_type(many, list[Downloaded])

    try:
        pass
    except GenerationFailedError as failed:
        assert_type(failed.result, FetchResult)
    except WaitTimeoutError as timed_out:
        assert_type(timed_out.result, FetchResult | None)
    except ModelsLabError as error:
        assert_type(error.request_id, str | None)


def sync_usage() -> None:
    with ModelsLab() as client:
        assert_type(client.images.wait("13443927"), FetchResult)
        assert_type(client.enterprise.super_resolution.fetch(1), FetchResult)
        batch = client.images.wait_many(["1"])
        assert_type(batch, SyncBatch[FetchResult])
        for outcome in batch:
            assert_type(outcome, Success[FetchResult] | Failure[FetchResult])
            if outcome.ok:
                assert_type(outcome.result, FetchResult)


async def simulator_usage() -> None:
    simulator = Simulator(seed=1)
    ids = simulator.queue_many(10, ready_in=(0.1, 1.0))
    assert_type(ids, list[str])
    app = SimulatorApp(simulator, faults=Faults(error_rate=0.1))
    async with in_process_client(app) as client:
        assert_type(client, AsyncModelsLab)


async def endpoint_usage(generation_response: dict[str, object]) -> None:
    async with AsyncModelsLab() as client:
        assert_type(await client.video.wait(1), FetchResult)
        assert_type(await client.voice.wait("2"), VoiceResult)
        assert_type(await client.enterprise.three_d.fetch(3), ThreeDResult)
        assert_type(await client.v7.voice.wait(4, timeout=None), VoiceResult)
        voices = client.enterprise.text_to_speech.wait_many(["5"])
        assert_type(voices, Batch[VoiceResult])
        assert_type(await client.wait_for(generation_response), FetchResult)
        assert_type(client.wait_for_many([generation_response]), Batch[FetchResult])
    with ModelsLab() as sync_client:
        assert_type(sync_client.voice.wait(1), VoiceResult)
        assert_type(sync_client.v7.video_fusion.fetch(2), FetchResult)
        assert_type(sync_client.enterprise.three_d.wait_many(["3"]), SyncBatch[ThreeDResult])
        assert_type(sync_client.wait_for(generation_response, endpoint="video"), FetchResult)
        for outcome in sync_client.wait_for_many([generation_response]):
            assert_type(outcome, Success[FetchResult] | Failure[FetchResult])


async def events_usage() -> None:
    def on_event(event: ClientEvent) -> None:
        match event:
            case RequestSent(request_id=request_id, url=url):
                assert_type(request_id, str | None)
                assert_type(url, str)
            case ResponseReceived(status_code=status_code, elapsed=elapsed, error=error):
                assert_type(status_code, int)
                assert_type(elapsed, float)
                assert_type(error, ModelsLabError | None)
            case RequestFailed(error=failure):
                assert_type(failure, ModelsLabError)
            case RetryScheduled(attempt=attempt, delay=delay, error=why):
                assert_type(attempt, int)
                assert_type(delay, float)
                assert_type(why, Exception)
            case ClientPaused(seconds=seconds, error=limited):
                assert_type(seconds, float)
                assert_type(limited, RateLimitError)

    callback: EventCallback = on_event
    async with AsyncModelsLab(on_event=callback) as client:
        assert_type(client.requests_in_flight, int)
    with ModelsLab(on_event=print) as sync_client:
        assert_type(sync_client.requests_in_flight, int)
    assert_type(normalize_request_id(" 123\n"), str)
