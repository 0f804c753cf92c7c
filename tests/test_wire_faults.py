"""What a faulty server does to the SDK: each fault ends in a result or one clear error.

Over real sockets on 127.0.0.1, on both HTTP backends: resets, truncated bodies, edge pages
and rate limits retried to success; permanent faults as one typed ModelsLabError; hangs and
drips meeting one overall deadline per attempt (not a per-read timeout a drip can dodge);
refused connections and unknown hosts; odd shapes read as results. The SDK's sleeps are on
a fake clock where it can be (the sockets are real, the waiting is not). Then the faults the
simulator gives the way ModelsLab's docs describe (its wire form is checked in
tests/test_simulator.py). Never a hang, a bare KeyError or ValidationError.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import modelslab_fetch
from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    AuthenticationError,
    DownloadError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    PollPolicy,
    RateLimitError,
    RequestNotFoundError,
    ResponseParseError,
    Status,
)
from modelslab_fetch._errors import (
    BackendConnectionError,
    BackendTimeout,
    BackendUnknownHost,
)
from modelslab_fetch._http._backends._contract import (
    MAX_RESPONSE_BYTES,
    Backend,
    connection_error,
    overall_deadline,
)
from modelslab_fetch._jobs._downloads import Downloader
from modelslab_fetch.testing import (
    Faults,
    QueueLimitWait,
    Simulator,
    SimulatorApp,
    in_process_client,
)
from tests.backends import TIMEOUT, post, result
from tests.conftest import API_KEY, BACKENDS, FakeClock, client_on
from tests.loopback import (
    LoopbackServer,
    Reply,
    ScriptedServer,
    answer,
    drip_body,
    drip_headers,
    free_port,
    never_answer,
    raw,
    scripted_server,
)

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


def done(request_id: str) -> Reply:
    return Reply(
        200, {"status": "success", "id": int(request_id), "output": [f"https://x/{request_id}.png"]}
    )


async def test_a_refused_connection_says_it_could_not_talk() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/api"
    async with AsyncModelsLab(api_key=API_KEY, base_url=base_url, max_retries=1) as client:
        with pytest.raises(APIConnectionError, match="could not talk to"):
            await client.images.fetch(1)


async def test_a_reset_on_the_real_clock_is_retried(server: ScriptedServer) -> None:
    server.script("8", Reply(action="reset"), done("8"))
    async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url) as client:
        assert (await client.images.fetch(8)).succeeded
    assert len(server.seen) == 2


async def test_a_hang_on_the_real_clock_says_it_timed_out(server: ScriptedServer) -> None:
    server.script("9", Reply(action="hang"))
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=server.base_url, timeout=0.2, max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError, match="timed out"):
            await client.images.fetch(9)


async def test_a_307_to_another_host_sends_it_nothing(server: ScriptedServer) -> None:
    with scripted_server() as elsewhere:
        server.script("5", Reply(307, b"", {"location": f"{elsewhere.base_url}/v6/images/fetch"}))
        client = AsyncModelsLab(api_key=API_KEY, base_url=server.base_url)
        async with client:
            with pytest.raises(APIStatusError, match="not followed"):
                await client.images.fetch(5)
        assert elsewhere.seen == []


# --- slow servers: one deadline for the whole exchange ----------------------------------


Hostile = Callable[..., LoopbackServer]


# Generous for a 2-core machine shared by several test runs, still far below a drip's
# natural length (tens of seconds) or forever.
SLACK = 1.0


def test_the_deadline_is_the_largest_finite_timeout() -> None:
    assert overall_deadline(httpx.Timeout(30, connect=10)) == 30
    assert overall_deadline(httpx.Timeout(5, read=None)) == 5
    assert overall_deadline(httpx.Timeout(None)) is None


@pytest.mark.parametrize(
    "behaviour", [drip_body(), drip_headers(), never_answer()], ids=["body", "headers", "silent"]
)
async def test_slow_servers_time_out_within_the_deadline(
    hostile: Hostile, backend: Backend, behaviour: object
) -> None:
    server = hostile(behaviour)
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as caught:
        await post(backend, server)
    elapsed = time.monotonic() - started
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + SLACK
    assert caught.value.detail


async def test_a_drip_that_beats_every_read_timeout_still_meets_the_deadline(
    hostile: Hostile, backend: Backend
) -> None:
    # Each byte comes 0.25 s apart, well within the 1 s read timeout: only the overall
    # deadline can stop it, and its message says so.
    server = hostile(drip_headers(0.25))
    with pytest.raises(BackendTimeout, match=r"whole exchange exceeded 1 s"):
        await post(backend, server)


async def test_no_deadline_when_timeout_is_none(hostile: Hostile, backend: Backend) -> None:
    body = b'{"status": "success"}'
    server = hostile(drip_body(body, interval=0.02))
    response = await backend.post(server.url(), b"{}", {}, httpx.Timeout(None))
    assert getattr(response, "content", None) == body


@pytest.mark.parametrize("own_client", [False, True], ids=["aiohttp", "httpx"])
@pytest.mark.parametrize("behaviour", [drip_body(), drip_headers()], ids=["body", "headers"])
async def test_fetch_gives_up_after_timeout(
    hostile: Hostile, own_client: bool, behaviour: object
) -> None:
    server = hostile(behaviour)
    http_client = httpx.AsyncClient() if own_client else None
    async with AsyncModelsLab(
        base_url=server.base_url, api_key="k", timeout=1, max_retries=0, http_client=http_client
    ) as client:
        started = time.monotonic()
        with pytest.raises(modelslab_fetch.APITimeoutError):
            await client.images.fetch("1")
        assert time.monotonic() - started < TIMEOUT + SLACK
    if http_client is not None:
        await http_client.aclose()


@pytest.mark.parametrize(
    "behaviour", [drip_body(b"\x89PNG" + b"\x00" * 60), drip_headers(), never_answer()]
)
async def test_a_slow_image_download_gives_up_after_timeout(
    hostile: Hostile, tmp_path: Path, behaviour: object
) -> None:
    server = hostile(behaviour)
    async with AsyncModelsLab(
        api_key="k", timeout=1, max_retries=0, allow_private_downloads=True
    ) as client:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            await client.download(result(server.url("/a.png")), tmp_path)
        assert time.monotonic() - started < TIMEOUT + SLACK
    assert server.url("/a.png") in str(caught.value)
    assert "within 1 s" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


async def test_a_download_meets_its_per_file_limit(
    hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = hostile(drip_body(b"\x00" * 100, interval=0.1))
    monkeypatch.setattr("modelslab_fetch._jobs._downloads.FILE_TIME_LIMIT", 0.5)
    async with httpx.AsyncClient(timeout=30) as http:
        downloader = Downloader(http)
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"within 0\.5 s \(the per-file limit"):
            await downloader.download(result(server.url("/a.png")), tmp_path)
        assert time.monotonic() - started < 0.5 + SLACK


async def test_downloads_follow_redirects_themselves(hostile: Hostile, tmp_path: Path) -> None:
    target = hostile(answer(body=b"PNG!", headers={"Content-Type": "image/png"}))
    hop = hostile(
        raw(
            b"HTTP/1.1 302 Found\r\nLocation: " + target.url("/b.png").encode() + b"\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
        )
    )
    async with httpx.AsyncClient(timeout=5) as http:
        paths = await Downloader(http).download(result(hop.url("/a.png")), tmp_path)
    assert paths[0].read_bytes() == b"PNG!"


async def test_endless_redirects_are_a_download_error(hostile: Hostile, tmp_path: Path) -> None:
    loop = hostile(raw(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"))
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(DownloadError, match="more than 20 redirects"):
            await Downloader(http).download(result(loop.url("/a.png")), tmp_path)
    assert len(loop.requests) == 21


async def test_a_corrupt_image_encoding_is_a_download_error(
    hostile: Hostile, tmp_path: Path
) -> None:
    server = hostile(answer(body=b"not gzip", headers={"Content-Encoding": "gzip"}))
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(DownloadError, match="not valid gzip"):
            await Downloader(http).download(result(server.url("/a.png")), tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_name_that_does_not_exist_is_an_unknown_host(backend: Backend) -> None:
    # .invalid never resolves (RFC 6761); bounded in case the sandbox resolver hangs.
    with anyio.move_on_after(5) as scope, pytest.raises(BackendUnknownHost) as caught:
        await backend.post("http://modelslab-fetch-test.invalid/x", b"{}", {}, httpx.Timeout(4))
    if scope.cancelled_caught:
        pytest.skip("the resolver did not answer within 5 s")
    assert "does not exist" in caught.value.detail


def test_a_temporary_dns_failure_is_not_an_unknown_host() -> None:
    def chained(errno: int) -> httpx.ConnectError:
        error = httpx.ConnectError("could not connect")
        error.__cause__ = socket.gaierror(errno, "resolver says")
        return error

    assert type(connection_error(chained(socket.EAI_AGAIN))) is BackendConnectionError
    assert type(connection_error(chained(socket.EAI_NONAME))) is BackendUnknownHost


# --- the faults the simulator gives -------------------------------------------------------


async def test_an_unknown_id_is_request_not_found_named_for_the_id_asked() -> None:
    app = SimulatorApp(Simulator())
    async with in_process_client(app) as client:
        with pytest.raises(RequestNotFoundError) as fetched:
            await client.images.fetch("424242")
        with pytest.raises(RequestNotFoundError) as waited:
            await client.images.wait("424242", timeout=5)
    assert fetched.value.request_id == "424242"
    assert waited.value.request_id == "424242"
    assert app.simulator.jobs == {}


@pytest.mark.parametrize("wait_in", ["body", "reset_header"])
async def test_queue_limits_are_polled_through(wait_in: QueueLimitWait) -> None:
    simulator = Simulator(seed=3)
    # An X-RateLimit-Reset is a whole epoch second: up to a second per rate limit.
    faults = Faults(queue_limit_rate=0.3, queue_limit_wait=0.05, queue_limit_wait_in=wait_in)
    app = SimulatorApp(simulator, faults=faults, seed=3)
    ids = simulator.queue_many(6, ready_in=(0.05, 0.3))
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["queue limit"] > 0
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if not o.ok]


async def test_the_spam_filter_is_polled_through_and_never_a_failed_job() -> None:
    simulator = Simulator(seed=4)
    app = SimulatorApp(simulator, faults=Faults(spam_filter_rate=0.5, spam_filter_wait=0), seed=4)
    ids = simulator.queue_many(20, ready_in=(0.05, 0.3))
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["spam filter"] > 0
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if not o.ok]


async def test_fetch_raises_the_queue_limit_once_its_retries_are_spent() -> None:
    app = SimulatorApp(Simulator(), faults=Faults(queue_limit_rate=1.0, queue_limit_wait=0.01))
    job = app.simulator.queue()
    async with in_process_client(app, max_retries=1) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.images.fetch(job)
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.status_code == 429


@pytest.mark.parametrize(
    ("account_error", "error_class"),
    [
        ("no_credits", InsufficientCreditsError),
        ("plan", PermissionDeniedError),
        ("bad_key", AuthenticationError),
        ("bad_key_legacy", AuthenticationError),
    ],
)
async def test_an_account_refusal_stops_the_batch(
    account_error: str, error_class: type[Exception]
) -> None:
    simulator = Simulator()
    app = SimulatorApp(simulator, faults=Faults(account_error=account_error))  # type: ignore[arg-type]
    ids = simulator.queue_many(300, ready_in=(0.0, 0.1))
    async with in_process_client(app, max_concurrency=8) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert len(outcomes) == 300
    assert all(type(outcome.error) is error_class for outcome in outcomes)
    assert sum(app.faults.kinds.values()) <= 8  # requests sent: at most max_concurrency


async def test_odd_shapes_are_read_as_results() -> None:
    simulator = Simulator(seed=5)
    app = SimulatorApp(simulator, faults=Faults(odd_shape_rate=1.0), seed=5)
    ids = simulator.queue_many(30, ready_in=(0.0, 0.2), failure_rate=0.2)
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["odd shape"] > 0
    for outcome in outcomes:
        if outcome.result is not None:
            assert outcome.result.output
            assert all(url.startswith("http") for url in outcome.result.output)
            assert outcome.result.id == outcome.request_id
        else:
            assert isinstance(outcome.error, ModelsLabError)
            assert outcome.error.request_id == outcome.request_id
            assert "Request not found" not in str(outcome.error)
