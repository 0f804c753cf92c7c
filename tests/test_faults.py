"""Faults over real sockets, on both HTTP backends: each ends in success or one clear error.

Every case runs against a scripted server on 127.0.0.1, with the SDK's sleeps on a fake
clock (the sockets are real, the waiting is not). The outcome must be a result after
retries, or one typed ModelsLabError: never a hang, a bare KeyError or ValidationError.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    ModelsLabError,
    PollPolicy,
    RateLimitError,
    ResponseParseError,
    Status,
)
from modelslab_fetch._http._backends._contract import MAX_RESPONSE_BYTES
from tests.conftest import API_KEY, BACKENDS, FakeClock, client_on
from tests.local_server import Reply, ScriptedServer, free_port, scripted_server

pytestmark = pytest.mark.integration

OK = Reply(200, {"status": "success", "id": 1, "output": ["https://cdn.example/1.png"]})
EDGE_PAGE = b"<!DOCTYPE html><html><title>522: Connection timed out</title></html>"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, server: ScriptedServer, clock: FakeClock
) -> AsyncIterator[AsyncModelsLab]:
    options = {"api_key": API_KEY, "base_url": server.base_url, "timeout": 2.0, "max_retries": 2}
    async with client_on(request.param, clock=clock, **options) as client:
        yield client


def html(status: int) -> Reply:
    return Reply(status, EDGE_PAGE, {"content-type": "text/html"})


RECOVERED = {
    "reset before answering": Reply(action="reset"),
    "reset mid-response": Reply(200, b'{"status": "success", "id": 1}', action="reset-mid"),
    "truncated body": Reply(200, b'{"status": "success", "id": 1}', action="truncated"),
    "JSON 500": Reply(500, {"message": "Internal Server Error"}),
    "JSON 503": Reply(503, {"message": "busy"}),
    "HTML 502": html(502),
    "HTML 503": html(503),
    **{f"HTML {status}": html(status) for status in (520, 521, 522, 523, 524)},
    "429 Retry-After seconds": Reply(429, {"message": "slow down"}, {"retry-after": "2"}),
    "429 Retry-After HTTP date": Reply(
        429,
        {"message": "slow down"},
        {
            "retry-after": format_datetime(
                datetime.now(timezone.utc) + timedelta(seconds=3), usegmt=True
            )
        },
    ),
    "429 without Retry-After": Reply(429, {"message": "slow down"}),
}


@pytest.mark.parametrize("fault", list(RECOVERED))
async def test_transient_faults_are_retried_to_success(
    fault: str, client: AsyncModelsLab, server: ScriptedServer
) -> None:
    server.script("1", RECOVERED[fault], OK)
    with anyio.fail_after(15):
        result = await client.images.fetch(1)
    assert result.succeeded
    assert len(server.seen) == 2


FAILED_CLEARLY: dict[str, tuple[Reply, type[ModelsLabError], str]] = {
    "HTML 200": (Reply(200, EDGE_PAGE, {"content-type": "text/html"}), ResponseParseError, "HTML"),
    "plain text 200": (
        Reply(200, b"ok", {"content-type": "text/plain"}),
        ResponseParseError,
        "not JSON",
    ),
    "JSON list": (Reply(200, [1, 2]), ResponseParseError, "JSON object"),
    "status a number": (Reply(200, {"status": 1}), ResponseParseError, "status"),
    "status missing": (
        Reply(200, {"output": ["https://a/0.png"]}),
        ResponseParseError,
        "status",
    ),
    "404": (Reply(404, {"message": "nope"}), APIStatusError, "404"),
    "persistent 502": (html(502), APIStatusError, "502"),
    "429 for an hour": (Reply(429, {}, {"retry-after": "3600"}), RateLimitError, "3600"),
}


@pytest.mark.parametrize("fault", list(FAILED_CLEARLY))
async def test_permanent_faults_fail_with_one_clear_error(
    fault: str, client: AsyncModelsLab, server: ScriptedServer
) -> None:
    reply, error_class, words = FAILED_CLEARLY[fault]
    server.script("1", reply)
    with anyio.fail_after(15), pytest.raises(error_class, match=words) as caught:
        await client.images.fetch(1)
    assert caught.value.request_id == "1"


async def test_connection_refused(clock: FakeClock) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/api"
    async with AsyncModelsLab(api_key=API_KEY, base_url=base_url, clock=clock, max_retries=2) as c:
        with anyio.fail_after(15), pytest.raises(APIConnectionError):
            await c.images.fetch(1)


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_read_timeout_is_an_api_timeout(
    backend: str, server: ScriptedServer, clock: FakeClock
) -> None:
    server.script("1", Reply(action="hang"), OK)
    server.script("2", Reply(action="hang"))
    async with httpx.AsyncClient() as http_client:
        client = AsyncModelsLab(
            api_key=API_KEY,
            base_url=server.base_url,
            clock=clock,
            timeout=0.3,
            max_retries=1,
            http_client=http_client if backend == "httpx" else None,
        )
        async with client:
            with anyio.fail_after(15):
                assert (await client.images.fetch(1)).succeeded  # the retry gets the answer
            with anyio.fail_after(15), pytest.raises(APITimeoutError):
                await client.images.fetch(2)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_oversize_bodies_are_refused_not_read(
    framing: str, client: AsyncModelsLab, server: ScriptedServer
) -> None:
    huge = b'{"status": "success", "junk": "' + b"x" * (MAX_RESPONSE_BYTES + 1024) + b'"}'
    server.script("1", Reply(200, huge, action="stream" if framing == "chunked" else "reply"))
    with anyio.fail_after(15), pytest.raises(ResponseParseError, match="larger than 10 MB"):
        await client.images.fetch(1)


@pytest.mark.parametrize(
    ("eta", "expected"),
    [(-5, 0.0), (1e300, 1e300), ("1e999", None), (math.nan, None), ("soon", None), ("3.5", 3.5)],
)
async def test_wrong_eta_types_still_give_a_result(
    eta: Any, expected: float | None, client: AsyncModelsLab, server: ScriptedServer
) -> None:
    body = json.dumps({"status": "processing", "id": 1, "eta": eta}).encode()  # NaN as JSON NaN
    server.script("1", Reply(200, body))
    result = await client.images.fetch(1)
    assert result.status is Status.PROCESSING
    assert result.eta == expected


async def test_waiting_through_wrong_etas_stays_inside_the_policy(
    server: ScriptedServer, clock: FakeClock
) -> None:
    weird = [1e300, -1, "NaN", "word"]
    server.script(
        "1",
        *(Reply(200, json.dumps({"status": "processing", "eta": eta}).encode()) for eta in weird),
        OK,
    )
    policy = PollPolicy()
    async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url, clock=clock) as c:
        assert (await c.images.wait(1, timeout=600)).succeeded
    ceiling = max(policy.max_interval, policy.backoff_max + policy.backoff_initial)
    assert all(policy.min_interval <= pause <= ceiling for pause in clock.sleeps)
    assert clock.sleeps[0] == policy.max_interval  # a huge eta is capped


async def test_output_as_a_lone_string_is_a_list(
    client: AsyncModelsLab, server: ScriptedServer
) -> None:
    server.script("1", Reply(200, {"status": "success", "output": "https://cdn.example/1.png"}))
    assert (await client.images.fetch(1)).output == ["https://cdn.example/1.png"]


async def test_a_redirect_to_another_host_sends_it_nothing(
    client: AsyncModelsLab, server: ScriptedServer
) -> None:
    with scripted_server() as elsewhere:
        server.script("1", Reply(302, b"", {"location": f"{elsewhere.base_url}/v6/images/fetch"}))
        with pytest.raises(APIStatusError, match="not followed"):
            await client.images.fetch(1)
        assert elsewhere.seen == []


async def test_random_5xx_in_a_batch_lose_no_id(server: ScriptedServer, clock: FakeClock) -> None:
    ids = [str(n) for n in range(1, 61)]
    for n, rid in enumerate(ids):
        status = (500, 502, 503, 504, 520)[n % 5]
        fault = [Reply(status, {"message": "boom"})] if n % 3 == 0 else []
        server.script(rid, *fault, Reply(200, {"status": "success", "id": rid, "output": ["u"]}))
    async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url, clock=clock) as c:
        outcomes = [o async for o in c.images.wait_many(ids, concurrency=16)]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    assert all(o.ok for o in outcomes)
