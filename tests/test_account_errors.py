"""An error about the account stops a batch from sending; every id still gets its outcome.

A wrong key, no credits or a plan that forbids the call is the same answer for every id:
a batch of 100,000 ids must not spend 100,000 requests learning it.
"""

from __future__ import annotations

import json
from collections import Counter

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    AccountError,
    AsyncModelsLab,
    AuthenticationError,
    InsufficientCreditsError,
    ModelsLab,
    PermissionDeniedError,
)
from tests.backends import both_backends, collect
from tests.conftest import API_KEY, IMAGES_URL, FakeClock
from tests.loopback import Reply, scripted_server

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

REFUSALS = {
    "bad key (200)": (
        httpx.Response(200, json={"status": "error", "message": "Invalid Api Key"}),
        AuthenticationError,
    ),
    "bad key (401)": (
        httpx.Response(401, json={"status": "error", "message": "Invalid API key"}),
        AuthenticationError,
    ),
    "no credits": (
        httpx.Response(
            402,
            json={
                "status": "error",
                "message": "Insufficient credits. Please add more credits to continue.",
            },
        ),
        InsufficientCreditsError,
    ),
    "plan": (
        httpx.Response(
            403, json={"status": "error", "message": "This feature requires a premium subscription"}
        ),
        PermissionDeniedError,
    ),
}
IDS = [str(n) for n in range(1000, 1200)]


@pytest.mark.parametrize("refusal", list(REFUSALS))
@pytest.mark.parametrize("call", ["wait_many", "fetch_many"])
async def test_a_batch_stops_sending_at_the_first_account_error(
    refusal: str, call: str, clock: FakeClock, router: respx.MockRouter
) -> None:
    response, error_class = REFUSALS[refusal]

    async def slow_refusal(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.01)  # keep the first requests in flight together
        return response

    route = router.post(IMAGES_URL)
    route.side_effect = slow_refusal
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_concurrency=4) as client:
        batch = getattr(client.images, call)(IDS)
        outcomes = await collect(batch)
    assert route.call_count <= client.max_concurrency
    assert sorted(outcome.request_id for outcome in outcomes) == sorted(IDS)
    for outcome in outcomes:
        assert isinstance(outcome.error, AccountError)
        assert type(outcome.error) is error_class
        assert outcome.error.request_id == outcome.request_id  # named for its own id
    assert Counter(str(outcome.error) for outcome in outcomes).most_common(1)[0][1] == 1


async def test_other_errors_do_not_stop_a_batch(clock: FakeClock, router: respx.MockRouter) -> None:
    route = router.post(IMAGES_URL).respond(
        200, json={"status": "failed", "message": "Request not found"}
    )
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_concurrency=4) as client:
        outcomes = await collect(client.images.fetch_many(IDS[:20]))
    assert route.call_count == 20
    assert not any(isinstance(outcome.error, AccountError) for outcome in outcomes)


async def test_one_batch_stopping_does_not_stop_the_client(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [REFUSALS["no credits"][0]] + [
        httpx.Response(200, json={"status": "success", "id": 1, "output": ["https://a/0.png"]})
    ] * 5
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_concurrency=1) as client:
        first = await collect(client.images.fetch_many(["1", "2", "3"]))
        assert all(isinstance(outcome.error, InsufficientCreditsError) for outcome in first)
        second = await collect(client.images.fetch_many(["4", "5"]))
    assert all(outcome.ok for outcome in second)


@pytest.mark.integration
def test_a_wrong_key_over_real_sockets_costs_at_most_max_concurrency_requests() -> None:
    with scripted_server() as server:
        for rid in IDS:
            server.script(rid, Reply(200, {"status": "error", "message": "Invalid Api Key"}))
        with ModelsLab(api_key=API_KEY, base_url=server.base_url, max_concurrency=8) as client:
            outcomes = list(client.images.wait_many(IDS, timeout=30))
        assert len(server.seen) <= 8
    assert len(outcomes) == len(IDS)
    assert all(isinstance(outcome.error, AuthenticationError) for outcome in outcomes)


@pytest.mark.anyio
async def test_an_account_stop_leaves_calls_of_tasks_its_work_started_alone() -> None:
    # on_update (or any work of a batch id) may start work of its own in your task group:
    # those tasks copy the batch's context, but their calls are not the batch's, and an
    # account error of the batch must not end them.
    with respx.mock(assert_all_called=False) as router:

        async def answer(request: httpx.Request) -> httpx.Response:
            rid = json.loads(request.content)["request_id"]
            if rid == "Z":  # the unrelated call, still in flight when the batch stops
                await anyio.sleep(0.6)
            elif rid == "B":
                await anyio.sleep(0.2)
                return httpx.Response(401, json={"status": "error", "message": "Invalid API key"})
            return httpx.Response(200, json={"status": "success", "id": rid, "output": []})

        router.post(url__regex=r".*").side_effect = answer
        got: dict[str, object] = {}
        async with AsyncModelsLab(api_key=API_KEY) as client, anyio.create_task_group() as tg:

            async def unrelated() -> None:
                got["Z"] = (await client.images.fetch("Z")).status

            def on_update(update: object) -> None:
                if getattr(update, "request_id", None) == "A":
                    tg.start_soon(unrelated)

            async with client.images.wait_many(["A", "B"], on_update=on_update) as batch:
                outcomes = {o.request_id: o async for o in batch}
        assert outcomes["A"].ok
        assert isinstance(outcomes["B"].error, AuthenticationError)
        assert got["Z"] == "success"
