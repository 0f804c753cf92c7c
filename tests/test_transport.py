"""The transport as users meet it through fetch(): URLs, bodies, error mapping, retries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ModelsLabError,
    RateLimitError,
    RequestNotFoundError,
    ResponseParseError,
    RetryPolicy,
    Status,
)
from modelslab_fetch._http._decoding import OneChunk
from modelslab_fetch._http._transport import request_json
from tests.backends import asyncio_only, both_backends
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL, FakeClock, echo_success

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

OK = {"status": "success", "id": 13443927, "output": ["https://cdn.example/0.png"]}


async def test_images_fetch_posts_key_and_request_id(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).respond(json=OK)
    result = await client.images.fetch("13443927")
    assert result.status is Status.SUCCESS
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("modelslab-fetch/")
    assert json.loads(request.content) == {"key": API_KEY, "request_id": "13443927"}


async def test_int_ids_are_sent_as_text(client: AsyncModelsLab, router: respx.MockRouter) -> None:
    route = router.post(IMAGES_URL).respond(json=OK)
    await client.images.fetch(13443927)
    assert json.loads(route.calls.last.request.content)["request_id"] == "13443927"


async def test_super_resolution_fetch_puts_the_id_in_the_path_and_only_the_key_in_the_body(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(f"{BASE_URL}/v1/enterprise/super_resolution/fetch/12202888").respond(
        json={"status": "success", "id": 12202888, "output": ["https://cdn.example/1.png"]}
    )
    result = await client.enterprise.super_resolution.fetch(12202888)
    assert result.id == "12202888"
    assert json.loads(route.calls.last.request.content) == {"key": API_KEY}


async def test_base_url_paths_are_appended(clock: FakeClock, router: respx.MockRouter) -> None:
    route = router.post("http://127.0.0.1:8000/api/v6/images/fetch").respond(json=OK)
    async with AsyncModelsLab(
        api_key=API_KEY, base_url="http://127.0.0.1:8000/api/", clock=clock
    ) as client:
        await client.images.fetch(1)
    assert route.called


@pytest.mark.parametrize("status", [401])
async def test_401_is_an_authentication_error_without_retry(
    status: int, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).respond(status, json={"message": "nope"})
    with pytest.raises(AuthenticationError) as caught:
        await client.images.fetch(1)
    assert caught.value.status_code == status
    assert caught.value.request_id == "1"
    assert route.call_count == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "message", ["Invalid Api Key", "invalid api key", "API key is missing", "Api key required"]
)
async def test_an_invalid_key_body_with_http_200_is_an_authentication_error(
    message: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).respond(200, json={"status": "error", "message": message})
    with pytest.raises(AuthenticationError, match="rejected the API key") as caught:
        await client.images.fetch(1)
    assert caught.value.status_code == 200  # the response it came in is kept
    assert caught.value.response is not None


async def test_other_error_bodies_are_results_not_exceptions(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    said = "Something went wrong while generating"
    router.post(IMAGES_URL).respond(json={"status": "error", "message": said})
    result = await client.images.fetch(1)
    assert result.status is Status.ERROR
    assert result.message == said


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524])
async def test_transient_statuses_are_retried_then_succeed(
    status: int, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.Response(status, text="busy"), httpx.Response(200, json=OK)]
    result = await client.images.fetch(1)
    assert result.succeeded
    assert route.call_count == 2
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize("status", [502, 503, 520, 521, 522, 523, 524, 530])
async def test_html_edge_pages_are_retried(
    status: int, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    page = "<!DOCTYPE html><html><head><title>Bad gateway</title></head></html>"
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.Response(status, html=page), httpx.Response(200, json=OK)]
    assert (await client.images.fetch(1)).succeeded
    assert route.call_count == 2


async def test_exhausted_retries_raise_the_last_status_error(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).respond(502, html="<html>bad gateway</html>")
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch(1)
    assert caught.value.status_code == 502
    assert "HTML error page" in str(caught.value)
    assert route.call_count == client.max_retries + 1
    assert len(clock.sleeps) == client.max_retries
    # exponential backoff: each pause is longer than the one before, and capped
    assert clock.sleeps == sorted(clock.sleeps)
    assert all(0 < pause <= 8.5 for pause in clock.sleeps)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (404, RequestNotFoundError),
        (405, APIStatusError),
        (409, APIStatusError),
        (422, BadRequestError),
        (501, APIStatusError),
        (530, APIStatusError),
    ],
)
async def test_other_statuses_are_not_retried(
    status: int,
    error_class: type[APIStatusError],
    client: AsyncModelsLab,
    router: respx.MockRouter,
) -> None:
    route = router.post(IMAGES_URL).respond(status, json={"message": "no such thing"})
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch(1)
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert "no such thing" in str(caught.value)
    assert route.call_count == 1


async def test_max_retries_zero_means_one_attempt(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).respond(503)
    async with AsyncModelsLab(api_key=API_KEY, max_retries=0, clock=clock) as client:
        with pytest.raises(APIStatusError):
            await client.images.fetch(1)
    assert route.call_count == 1


async def test_retry_after_seconds_is_honoured(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, headers={"Retry-After": "2"}),
        httpx.Response(200, json=OK),
    ]
    assert (await client.images.fetch(1)).succeeded
    assert clock.sleeps == [7.0, 2.0]


async def test_retry_after_http_date_is_honoured(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    route = router.post(IMAGES_URL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}),
        httpx.Response(200, json=OK),
    ]
    assert (await client.images.fetch(1)).succeeded
    assert len(clock.sleeps) == 1
    assert 27.0 <= clock.sleeps[0] <= 30.0


async def test_rate_limit_after_retries_is_a_rate_limit_error(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post(IMAGES_URL).respond(429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimitError) as caught:
        await client.images.fetch(1)
    assert caught.value.retry_after == 1.0
    assert caught.value.status_code == 429
    assert clock.sleeps == [1.0] * client.max_retries


async def test_a_retry_after_too_long_to_sleep_through_is_raised_at_once(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post(IMAGES_URL).respond(429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitError, match="3600") as caught:
        await client.images.fetch(1)
    assert caught.value.retry_after == 3600.0 > RetryPolicy().max_stated_wait
    assert route.call_count == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(
    status: int, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    elsewhere = router.post("https://evil.example/steal").respond(json=OK)
    router.post(IMAGES_URL).respond(status, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch(1)
    assert caught.value.status_code == status
    assert "https://evil.example/steal" in str(caught.value)
    assert not elsewhere.called


async def test_redirects_are_not_followed_even_by_a_client_that_would(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    elsewhere = router.post("https://evil.example/steal").respond(json=OK)
    router.post(IMAGES_URL).respond(307, headers={"Location": "https://evil.example/steal"})
    async with httpx.AsyncClient(follow_redirects=True) as http_client:
        client = AsyncModelsLab(api_key=API_KEY, http_client=http_client, clock=clock)
        with pytest.raises(APIStatusError):
            await client.images.fetch(1)
    assert not elsewhere.called


@pytest.mark.parametrize(
    ("response", "complaint"),
    [
        (httpx.Response(200, text="Service temporarily down"), "not JSON"),
        (httpx.Response(200, html="<html><body>maintenance</body></html>"), "an HTML page"),
        (httpx.Response(200, json=[OK]), "expected a JSON object, got list"),
        (httpx.Response(200, json="success"), "expected a JSON object, got str"),
        (httpx.Response(200, json={"output": []}), "not a fetch result: status"),
        (httpx.Response(200, json={"status": 3}), "not a fetch result: status"),
    ],
)
async def test_unparseable_200s_are_parse_errors_and_not_retried(
    response: httpx.Response,
    complaint: str,
    client: AsyncModelsLab,
    router: respx.MockRouter,
) -> None:
    route = router.post(IMAGES_URL).mock(return_value=response)
    with pytest.raises(ResponseParseError, match=complaint) as caught:
        await client.images.fetch(1)
    assert route.call_count == 1
    assert caught.value.request_id == "1"
    assert caught.value.excerpt
    assert len(caught.value.excerpt) <= 200


async def test_long_bodies_are_excerpted(client: AsyncModelsLab, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).respond(200, text="x" * 10_000)
    with pytest.raises(ResponseParseError) as caught:
        await client.images.fetch(1)
    assert caught.value.excerpt.endswith("…")
    assert len(caught.value.excerpt) == 200


@pytest.mark.parametrize(
    ("exception", "error_class"),
    [
        (httpx.ConnectError("refused"), APIConnectionError),
        (httpx.ReadError("reset by peer"), APIConnectionError),
        (httpx.RemoteProtocolError("peer closed"), APIConnectionError),
        (httpx.ConnectTimeout("slow"), APITimeoutError),
        (httpx.ReadTimeout("slow"), APITimeoutError),
        (httpx.PoolTimeout("busy"), APITimeoutError),
    ],
)
async def test_network_failures_are_retried_then_mapped(
    exception: Exception,
    error_class: type[ModelsLabError],
    client: AsyncModelsLab,
    router: respx.MockRouter,
) -> None:
    route = router.post(IMAGES_URL).mock(side_effect=exception)
    with pytest.raises(error_class) as caught:
        await client.images.fetch(1)
    assert type(exception).__name__ in str(caught.value)
    # httpx's exception holds the request, whose body holds the key: it is not chained.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert route.call_count == client.max_retries + 1
    assert caught.value.request_id == "1"


async def test_a_network_blip_is_retried_to_success(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.ConnectError("refused"), httpx.Response(200, json=OK)]
    assert (await client.images.fetch(1)).succeeded


async def test_an_echoed_key_is_redacted_from_results(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).respond(json={**OK, "echo": {"key": API_KEY}})
    result = await client.images.fetch(1)
    assert API_KEY not in json.dumps(result.raw)
    assert API_KEY not in result.model_dump_json()
    assert result.raw["echo"] == {"key": "***"}


async def test_error_responses_carry_no_request_body(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).respond(404, json={"message": "no"}, headers={"x-trace": "abc"})
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch(1)
    response = caught.value.response
    assert response.request.content == b""
    assert response.headers["x-trace"] == "abc"
    assert response.json() == {"message": "no"}


async def test_compressed_error_bodies_stay_readable(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    import gzip

    body = gzip.compress(b'{"message": "gone"}')
    router.post(IMAGES_URL).respond(
        410, content=body, headers={"content-encoding": "gzip", "content-type": "application/json"}
    )
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch(1)
    assert caught.value.response.json() == {"message": "gone"}


async def test_your_http_client_is_used_and_left_open(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).respond(json=OK)
    async with httpx.AsyncClient(headers={"x-mine": "1"}) as http_client:
        async with AsyncModelsLab(api_key=API_KEY, http_client=http_client, clock=clock) as client:
            await client.images.fetch(1)
        assert router.calls.last.request.headers["x-mine"] == "1"
        assert not http_client.is_closed


async def test_calls_after_close_raise_client_closed(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).respond(json=OK)
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.images.fetch(1)
    assert not route.called


# Asyncio only: an httpx body left part read (here, by a decoding error) leaves httpx's
# own async generators (AsyncResponseStream.__aiter__ and httpcore's below it) for the
# garbage collector, out of any caller's reach; trio's hooks report them as resource
# warnings, which this suite treats as errors. The error mapping itself is the same.
@asyncio_only
async def test_an_undecodable_body_through_httpx_is_a_typed_error(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(
        side_effect=lambda request: httpx.Response(
            200,
            headers={"content-encoding": "gzip"},
            stream=OneChunk(b"not gzip"),  # no async generator to leave open
        )
    )
    with pytest.raises(APIConnectionError, match="DecodingError") as caught:
        await client.images.fetch(1)
    assert caught.value.__context__ is None


async def test_a_closed_http_client_of_yours_is_a_typed_error(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_success)
    http_client = httpx.AsyncClient()
    await http_client.aclose()
    client = AsyncModelsLab(api_key=API_KEY, http_client=http_client, clock=clock, max_retries=0)
    with pytest.raises(APIConnectionError, match="closed"):
        await client.images.fetch(1)


async def test_closing_during_a_retry_opens_nothing_new(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    client = AsyncModelsLab(api_key=API_KEY, clock=clock)

    async def close_then_fail(request: httpx.Request) -> httpx.Response:
        await client.aclose()
        return httpx.Response(503)

    router.post(IMAGES_URL).mock(side_effect=close_then_fail)
    with pytest.raises(ClientClosedError):
        await client.images.fetch(1)
    assert not client._transport._httpx_backends._bindings  # closed, none opened since
    assert client._transport.closed


@asyncio_only  # under trio the body is a one-chunk stream (see OneChunk)
async def test_a_transport_of_yours_gets_the_body_as_plain_bytes(clock: FakeClock) -> None:
    # Transports such as httpx-aiohttp read request.content directly; a stream there
    # would make them wait forever.
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)  # raises RequestNotRead for a stream body
        return httpx.Response(200, json={"status": "success", "output": ["https://a/0.png"]})

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http_client,
        AsyncModelsLab(api_key=API_KEY, http_client=http_client, clock=clock) as client,
    ):
        assert (await client.images.fetch(7)).succeeded
    assert json.loads(seen[0]) == {"request_id": "7", "key": API_KEY}


@settings(max_examples=500, deadline=None)
@given(
    body=st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.none()), max_size=4),
    key=st.text(),
)
def test_the_request_body_is_written_exactly_as_json_dumps_writes_it(
    body: dict[str, object], key: str
) -> None:
    # The fetch body is written by hand on the hot path: byte for byte json.dumps's text,
    # whatever the fields and the key hold (quotes, backslashes, non-ASCII, surrogates).
    assert request_json(body, key, json.dumps(key)) == json.dumps({**body, "key": key}).encode()
