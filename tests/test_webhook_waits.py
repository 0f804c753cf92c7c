"""Waiting joins push and poll: a delivery ends a wait at once; polling is the fallback.

Every async test runs on asyncio and on trio. What is about time runs on the event loop's
real clock, bounded; the schedule's arithmetic (stretched gaps) on the fake clock.
Deliveries come through `client.webhooks.receive`, from another thread (a receiver on a
server thread), or from the waiting loop itself (a FastAPI app that also waits).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    AsyncModelsLab,
    GenerationFailedError,
    ModelsLab,
    PollPolicy,
    Status,
    VoiceResult,
    WaitTimeoutError,
    WebhookDelivery,
)
from tests.backends import both_backends
from tests.conftest import API_KEY, AT_ETA, BASE_URL, FakeClock

anyio_backend = both_backends

SECRET = "wait-tests-secret-0123456789-abcdefghijkl"
HOOK = "https://hooks.example.com/modelslab"
IMAGES = f"{BASE_URL}/v6/images/fetch"
VOICE = f"{BASE_URL}/v6/voice/fetch"
VIDEO = f"{BASE_URL}/v6/video/fetch"


class Job:
    """One job on a scripted server: processing (with an eta) until `done`, then final."""

    def __init__(self, eta: float = 30.0, final: str = "success") -> None:
        self.eta = eta
        self.final = final
        self.done = False
        self.fetches = 0

    def answer(self, request_id: str) -> dict[str, Any]:
        self.fetches += 1
        if self.done:
            body: dict[str, Any] = {"status": self.final, "id": request_id}
            if self.final == "success":
                body["output"] = [f"https://cdn.example/{request_id}.png"]
            else:
                body["message"] = "the model crashed"
            return body
        return {"status": "processing", "id": request_id, "eta": self.eta}


@pytest.fixture
def jobs() -> Iterator[dict[str, Job]]:
    """Jobs by id on every fetch endpoint (path form), served by respx."""
    table: dict[str, Job] = {}

    def serve(request: httpx.Request) -> httpx.Response:
        rid = request.url.path.rsplit("/", 1)[1]
        if rid == "fetch":
            rid = json.loads(request.content)["request_id"]
        job = table.setdefault(rid, Job())
        return httpx.Response(200, json=job.answer(rid))

    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith=BASE_URL).mock(side_effect=serve)
        yield table


def webhook_client(**options: Any) -> AsyncModelsLab:
    options.setdefault("webhook_url", HOOK)
    options.setdefault("webhook_secret", SECRET)
    return AsyncModelsLab(api_key=API_KEY, base_url=BASE_URL, **options)


def deliver(
    client: AsyncModelsLab | ModelsLab,
    request_id: str,
    status: str = "success",
    track_id: str = "trk",
) -> WebhookDelivery:
    """What ModelsLab POSTs on completion, received as a framework view would."""
    url = client.webhooks.fields(track_id)["webhook"]
    body: dict[str, Any] = {"status": status, "id": int(request_id), "track_id": track_id}
    if status == "success":
        body["output"] = [f"https://cdn.example/{request_id}.png"]
        body["generationTime"] = 1.2
    return client.webhooks.receive(
        url.removeprefix("https://hooks.example.com"), json.dumps(body).encode()
    )


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """Run `action` on another thread after `seconds` (a receiver on a server thread)."""

    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def generation_response(request_id: str, eta: float = 30.0, path: str = "images") -> dict[str, Any]:
    return {
        "status": "processing",
        "id": int(request_id),
        "eta": eta,
        "fetch_result": f"{BASE_URL}/v6/{path}/fetch/{request_id}",
    }


# ------------------------------------------------------------------ a delivery ends a wait


async def test_a_delivery_from_another_thread_ends_the_wait_with_one_confirming_fetch(
    jobs: dict[str, Job],
) -> None:
    job = jobs["101"] = Job(eta=30)
    async with webhook_client() as client:

        def ready_and_delivered() -> None:
            job.done = True
            deliver(client, "101")

        started = time.monotonic()
        thread = later(0.3, ready_and_delivered)
        with anyio.fail_after(10):
            result = await client.images.wait(101)
        thread.join()
    assert result.status is Status.SUCCESS
    assert time.monotonic() - started < 3, "woken by the delivery, not by a poll 30 s later"
    assert job.fetches == 2  # the first poll, and the one that confirms the delivery


async def test_a_delivery_received_on_the_waiting_loop_itself_ends_the_wait(
    jobs: dict[str, Job],
) -> None:
    job = jobs["102"] = Job(eta=30)
    async with webhook_client() as client:
        started = time.monotonic()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.images.wait, 102)
                await anyio.sleep(0.2)
                job.done = True
                deliver(client, "102")  # as an ASGI app mounted in the same app would
    assert time.monotonic() - started < 2
    assert job.fetches == 2


async def test_a_delivery_before_the_wait_starts_is_found_at_once(jobs: dict[str, Job]) -> None:
    job = jobs["103"] = Job(eta=30)
    job.done = True
    async with webhook_client() as client:
        deliver(client, "103")  # ModelsLab was faster than the generation request's return
        started = time.monotonic()
        with anyio.fail_after(5):
            result = await client.wait_for(generation_response("103", eta=30))
    assert result.succeeded
    assert time.monotonic() - started < 1
    assert job.fetches == 1  # the confirming fetch only: the response counted as poll 1


async def test_trusted_deliveries_are_the_result_with_no_fetch(jobs: dict[str, Job]) -> None:
    job = jobs["104"] = Job(eta=30)
    async with webhook_client(trust_webhooks=True) as client:
        assert client.webhooks.trusted
        thread = later(0.2, lambda: deliver(client, "104"))
        with anyio.fail_after(5):
            result = await client.wait_for(generation_response("104", path="voice"))
        thread.join()
        deliver(client, "105")
        kept = await client.voice.wait(105)
    assert job.fetches == 0
    assert isinstance(result, VoiceResult) and isinstance(kept, VoiceResult)
    assert (result.request_id, result.endpoint_name) == ("104", "voice")
    assert result.output == ["https://cdn.example/104.png"]
    assert "105" not in jobs, "a kept delivery, trusted, needs no fetch at all"


async def test_a_failed_delivery_ends_the_wait_with_the_confirmed_failure(
    jobs: dict[str, Job],
) -> None:
    job = jobs["106"] = Job(eta=30, final="failed")

    def failed_and_delivered() -> None:
        job.done = True
        deliver(client, "106", status="failed")

    async with webhook_client() as client:
        thread = later(0.2, failed_and_delivered)
        with anyio.fail_after(5), pytest.raises(GenerationFailedError) as caught:
            await client.images.wait(106)
        thread.join()
    assert caught.value.result.message == "the model crashed"


async def test_a_delivery_the_fetch_does_not_confirm_does_not_end_the_wait(
    jobs: dict[str, Job],
) -> None:
    # A forged delivery through a leaked URL, or a fetch that lags: the fetch's answer is
    # what counts, and the wait goes on polling, no longer stretched (the push came).
    jobs["107"] = Job(eta=10)
    clock = FakeClock()
    async with webhook_client(clock=clock, poll_policy=AT_ETA) as client:
        deliver(client, "107")
        with pytest.raises(WaitTimeoutError):
            await client.images.wait(107, timeout=35)
    assert clock.sleeps[:3] == [10, 10, 10], "unstretched once a delivery was acted upon"


async def test_one_delivery_wakes_every_wait_on_its_id_each_confirming_on_its_endpoint(
    jobs: dict[str, Job],
) -> None:
    # ModelsLab's ids are per product: the same id on images and video is two jobs; the
    # payload names neither, so both waits wake and each asks its own endpoint.
    job = jobs["108"] = Job(eta=30)
    results: dict[str, Any] = {}
    async with webhook_client() as client:

        async def wait_on(name: str) -> None:
            resource = getattr(client, name)
            results[name] = await resource.wait(108)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_on, "images")
                tg.start_soon(wait_on, "video")
                await anyio.sleep(0.2)
                job.done = True
                deliver(client, "108")
    assert {r.endpoint_name for r in results.values()} == {"images", "video"}
    assert job.fetches == 4  # two first polls, two confirmations


# ------------------------------------------------------------------ many at once


async def test_wait_many_and_wait_for_many_end_on_deliveries_duplicates_giving_one_outcome(
    jobs: dict[str, Job],
) -> None:
    ids = [str(200 + n) for n in range(40)]
    for rid in ids:
        jobs[rid] = Job(eta=60)
    async with webhook_client() as client:

        def all_ready_and_delivered_three_times() -> None:
            for rid in ids:
                jobs[rid].done = True
            for _ in range(3):
                for rid in ids:
                    deliver(client, rid)

        started = time.monotonic()
        thread = later(0.3, all_ready_and_delivered_three_times)
        with anyio.fail_after(10):
            half = len(ids) // 2
            async with client.images.wait_many(ids[:half]) as batch:
                outcomes = [o async for o in batch]
            responses = [generation_response(rid, eta=60) for rid in ids[half:]]
            async with client.wait_for_many(responses) as batch:
                outcomes += [o async for o in batch]
        thread.join()
    assert sorted(o.request_id for o in outcomes) == ids
    assert all(o.ok for o in outcomes)
    assert time.monotonic() - started < 5
    fetches = [jobs[rid].fetches for rid in ids]
    assert max(fetches) <= 2, fetches  # wait_many: a first poll and a confirmation


# ------------------------------------------------------------------ the schedule meanwhile


@pytest.mark.parametrize(("eta", "alone", "pushed"), [(10.0, 10.0, 17.5), (600.0, 30.0, 120.0)])
async def test_polls_are_stretched_while_a_delivery_is_expected(
    jobs: dict[str, Job], eta: float, alone: float, pushed: float
) -> None:
    # The fixed formula at the eta: polling alone sleeps the eta (up to max_interval, 30 s);
    # with a delivery expected, 1.75 times that, up to push_max_interval (120 s).
    sleeps = {}
    for name in ("alone", "pushed"):
        jobs.clear()
        jobs["300"] = Job(eta=eta)
        clock = FakeClock()
        client = AsyncModelsLab(
            api_key=API_KEY,
            base_url=BASE_URL,
            clock=clock,
            poll_policy=AT_ETA,
            webhook_url=HOOK if name == "pushed" else None,
            webhook_secret=SECRET if name == "pushed" else None,
        )
        async with client:
            with pytest.raises(WaitTimeoutError):
                await client.images.wait(300, timeout=1000)
        sleeps[name] = clock.sleeps[0]
    assert sleeps == {"alone": alone, "pushed": pushed}


async def test_a_lost_delivery_costs_lateness_never_the_job(jobs: dict[str, Job]) -> None:
    jobs["301"] = Job(eta=8)
    clock = FakeClock()
    async with webhook_client(clock=clock) as client, anyio.create_task_group() as tg:
        result: list[Any] = []

        async def waiter() -> None:
            result.append(await client.images.wait(301))

        tg.start_soon(waiter)
        while clock.elapsed < 8:  # the job is ready at 8 s; no delivery ever comes
            await anyio.lowlevel.checkpoint()
        jobs["301"].done = True
    assert result[0].succeeded
    assert jobs["301"].fetches >= 2


def test_push_stretch_and_push_max_interval_are_checked() -> None:
    assert PollPolicy().push_stretch == 1.75
    assert PollPolicy().push_max_interval == 120.0
    with pytest.raises(ValueError, match="push_stretch"):
        PollPolicy(push_stretch=0.5)
    with pytest.raises(ValueError, match="push_max_interval"):
        PollPolicy(push_max_interval=-1)


# ------------------------------------------------------------------ without waiting


async def test_deliveries_iterates_each_new_delivery_once_from_any_thread() -> None:
    async with webhook_client() as client:
        stream = client.webhooks.deliveries()
        thread = later(0.1, lambda: [deliver(client, str(400 + n % 5)) for n in range(15)])
        got = []
        with anyio.fail_after(5):
            async for delivery in stream:
                got.append(delivery.request_id)
                if len(got) == 5:
                    break
        thread.join()
        await stream.aclose()
    assert sorted(got) == [str(400 + n) for n in range(5)]


async def test_deliveries_ends_when_the_client_closes_and_can_replay_the_backlog() -> None:
    client = webhook_client()
    deliver(client, "500")
    async with client.webhooks.deliveries(backlog=True) as stream:
        first = await stream.__anext__()
        assert first.request_id == "500"
        token = anyio.lowlevel.current_token()
        later(0.2, lambda: anyio.from_thread.run(client.aclose, token=token))
        with anyio.fail_after(5):
            rest = [d async for d in stream]
    assert rest == []


# ------------------------------------------------------------------ the blocking client


def test_the_blocking_client_is_woken_by_a_receiver_on_another_thread(
    jobs: dict[str, Job],
) -> None:
    job = jobs["600"] = Job(eta=30)
    with ModelsLab(
        api_key=API_KEY, base_url=BASE_URL, webhook_url=HOOK, webhook_secret=SECRET
    ) as client:

        def ready_and_delivered() -> None:
            # After the wait's first poll (a loaded machine can take longer than the
            # 0.3 s to start the loop thread and send it): the job must be seen
            # unfinished once, so that the delivery is what ends the wait.
            deadline = time.monotonic() + 10
            while job.fetches == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            job.done = True
            deliver(client, "600")

        started = time.monotonic()
        thread = later(0.3, ready_and_delivered)
        result = client.images.wait(600, timeout=20)
        thread.join()
        assert result.succeeded
        assert time.monotonic() - started < 3
        assert job.fetches == 2

        seen: list[str] = []
        iterator = client.webhooks.deliveries()
        later(0.1, lambda: deliver(client, "601"))
        for delivery in iterator:
            seen.append(delivery.request_id)
            break
        iterator.close()
        assert seen == ["601"]
        assert list(iterator) == []


def test_the_blocking_iterator_ends_when_the_client_closes() -> None:
    client = ModelsLab(api_key=API_KEY, base_url=BASE_URL, webhook_url=HOOK, webhook_secret=SECRET)
    client.images  # noqa: B018 - the loop thread starts with the first call
    iterator = client.webhooks.deliveries()
    later(0.3, client.close)
    started = time.monotonic()
    assert list(iterator) == []
    assert time.monotonic() - started < 3
