"""Every answer ModelsLab documents becomes the right error, named for the id asked about.

The rows are the wire notes' error table and the bodies their second half quotes: HTTP
statuses with JSON bodies, and the same words in HTTP 200 `"status": "error"` bodies of
older endpoints. Each is checked through respx (with a fake clock) and over real sockets
on both HTTP backends.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from modelslab_fetch import (
    AccountError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    AuthenticationError,
    BadRequestError,
    CertificateVerificationError,
    HostNotFoundError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
    Status,
)
from modelslab_fetch._http._answers import ERROR_TABLE, is_transient
from tests.backends import both_backends
from tests.conftest import API_KEY, BACKENDS, IMAGES_URL, FakeClock, client_on
from tests.loopback import LoopbackServer, Reply, ScriptedServer, answer, scripted_server

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

ASKED = "13443927"

# (HTTP status, body, the error it stands for, retried by fetch())
ROWS: dict[str, tuple[int, dict[str, Any], type[ModelsLabError], bool]] = {
    "400 prompt is required": (
        400,
        {"status": "error", "message": "prompt is required"},
        BadRequestError,
        False,
    ),
    "400 validation object": (
        400,
        {"prompt": ["The prompt field is required."]},
        BadRequestError,
        False,
    ),
    "422 validation": (422, {"message": "The given data was invalid."}, BadRequestError, False),
    "401 invalid key": (
        401,
        {"status": "error", "message": "Invalid API key"},
        AuthenticationError,
        False,
    ),
    "402 no credits": (
        402,
        {
            "status": "error",
            "message": "Insufficient credits. Please add more credits to continue.",
        },
        InsufficientCreditsError,
        False,
    ),
    "403 premium": (
        403,
        {"status": "error", "message": "This feature requires a premium subscription"},
        PermissionDeniedError,
        False,
    ),
    "403 key words": (403, {"message": "Invalid API key"}, AuthenticationError, False),
    "404": (404, {"message": "Not Found"}, RequestNotFoundError, False),
    "429 queue limit": (
        429,
        {
            "status": "error",
            "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
            "retry_after": 30,
        },
        RateLimitError,
        True,
    ),
    "500": (
        500,
        {"status": "error", "message": "Internal server error. Please try again."},
        APIStatusError,
        True,
    ),
    "503": (
        503,
        {"status": "error", "message": "Service temporarily unavailable. Please try again later."},
        APIStatusError,
        True,
    ),
    "200 Invalid Api Key": (
        200,
        {"status": "error", "message": "Invalid Api Key"},
        AuthenticationError,
        False,
    ),
    "200 Invalid API Request": (
        200,
        {"status": "error", "message": "Invalid API Request"},
        BadRequestError,
        False,
    ),
    "200 Model id not found": (
        200,
        {"status": "error", "message": "Model id not found"},
        BadRequestError,
        False,
    ),
    "200 validation object": (
        200,
        {"status": "error", "message": {"prompt": ["The prompt field is required."]}},
        BadRequestError,
        False,
    ),
    "200 insufficient credits": (
        200,
        {
            "status": "error",
            "message": "Insufficient credits. Please add more credits to continue.",
        },
        InsufficientCreditsError,
        False,
    ),
    "200 request not found": (
        200,
        {"status": "failed", "id": "", "message": "Request not found", "output": ""},
        RequestNotFoundError,
        False,
    ),
    "200 spam filter": (
        200,
        {
            "status": "error",
            "message": "Rate limit exceeded",
            "tips": "You have exceeded the rate limit, please wait for 30 seconds and try again",
        },
        RateLimitError,
        True,
    ),
    "200 spam filter messege": (
        200,
        {"status": "error", "messege": "Rate limit exceeded", "tips": "please wait for 30 seconds"},
        RateLimitError,
        True,
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
async def test_each_documented_answer_is_its_error(
    row: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    status, body, error_class, retried = ROWS[row]
    route = router.post(IMAGES_URL).respond(status, json=body)
    with pytest.raises(ModelsLabError) as caught:
        await client.images.fetch(ASKED)
    error = caught.value
    assert type(error) is error_class
    assert error.request_id == ASKED  # the id asked about, never the body's (often "")
    assert f"request {ASKED}:" in str(error)
    response = getattr(error, "response", None)
    assert response is not None and response.status_code == status
    assert API_KEY not in str(error)
    assert is_transient(error) is retried
    assert route.call_count == (client.max_retries + 1 if retried else 1)


def test_every_rule_of_the_table_is_exercised_by_a_row() -> None:
    classes = {rule.error for rule in ERROR_TABLE}
    assert classes <= {row[2] for row in ROWS.values()}


@pytest.mark.parametrize(
    ("message", "error_class"),
    [
        ("Insufficient credits. Please add more credits to continue.", InsufficientCreditsError),
        ("This feature requires a premium subscription", PermissionDeniedError),
        ("Invalid Api Key", AuthenticationError),
    ],
)
def test_account_errors_share_a_base(message: str, error_class: type[ModelsLabError]) -> None:
    assert issubclass(error_class, AccountError)


async def test_an_unknown_error_body_is_a_result_not_an_exception(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    said = "Something went wrong while generating"
    router.post(IMAGES_URL).respond(200, json={"status": "error", "messege": said})
    result = await client.images.fetch(ASKED)
    assert result.status is Status.ERROR
    assert result.message == said


async def test_a_failed_generation_is_still_a_failed_result(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    body = {"status": "failed", "id": "", "message": "Image generation failed", "output": []}
    router.post(IMAGES_URL).respond(200, json=body)
    result = await client.images.fetch(ASKED)
    assert result.status is Status.FAILED
    assert result.id == ASKED


# Over real sockets, on both backends -------------------------------------------------


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
async def socket_client(
    request: pytest.FixtureRequest, server: ScriptedServer, clock: FakeClock
) -> AsyncIterator[AsyncModelsLab]:
    options = {"api_key": API_KEY, "base_url": server.base_url, "timeout": 5.0, "max_retries": 1}
    async with client_on(request.param, clock=clock, **options) as client:
        yield client


@pytest.mark.integration
@pytest.mark.parametrize("row", list(ROWS))
async def test_each_documented_answer_over_real_sockets(
    row: str, server: ScriptedServer, socket_client: AsyncModelsLab
) -> None:
    status, body, error_class, _retried = ROWS[row]
    server.script(ASKED, Reply(status, body))
    with pytest.raises(ModelsLabError) as caught:
        await socket_client.images.fetch(ASKED)
    assert type(caught.value) is error_class
    assert caught.value.request_id == ASKED


# Permanent versus transient, on evidence ----------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_an_untrusted_certificate_is_raised_at_once_with_its_complaint(
    backend: str, hostile: Callable[..., LoopbackServer]
) -> None:
    server = hostile(answer(body=b'{"status": "success", "output": []}'), tls=True)
    started = time.monotonic()
    async with (
        httpx.AsyncClient() as http_client,
        AsyncModelsLab(
            api_key=API_KEY,
            base_url=server.base_url,
            http_client=http_client if backend == "httpx" else None,
        ) as client,
    ):
        with pytest.raises(CertificateVerificationError) as caught:
            await client.images.wait(ASKED, timeout=600)
    # Not polled through: the poll schedule would ask again after a second or more, for
    # the whole 10-minute deadline. (The handshake fails before the harness counts it.)
    assert time.monotonic() - started < 5
    assert server.requests == []
    assert re.search(r"certificate", str(caught.value))
    assert "SSL_CERT_FILE" in str(caught.value)
    assert isinstance(caught.value, APIConnectionError)
    assert not is_transient(caught.value)


def test_temporary_connection_trouble_is_transient_and_a_missing_host_is_not() -> None:
    assert is_transient(APIConnectionError("connection refused"))
    assert is_transient(APITimeoutError("read timed out"))
    assert not is_transient(HostNotFoundError("no such host"))
    assert not is_transient(CertificateVerificationError("self-signed"))
