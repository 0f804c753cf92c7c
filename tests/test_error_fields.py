"""Errors say what a person needs to hear in typed fields, not only in their message.

A connection error names where it went (`url`) and what failed in a few words (`cause`),
read from the errors' types, not their text, on both HTTP backends over real sockets; a
configuration error names the option at fault (`option`); a download refused for its
address says why (`refused_address`); an unreadable answer what is wrong with it
(`problem`). A program (or the command line) words them for a
person without parsing a message written for programmers.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from modelslab_fetch import (
    APIConnectionError,
    APITimeoutError,
    AsyncModelsLab,
    CertificateVerificationError,
    ConfigurationError,
    DownloadError,
    FetchResult,
    ResponseParseError,
)
from tests.conftest import API_KEY, BACKENDS, BASE_URL, IMAGES_URL, client_on
from tests.loopback import LoopbackServer, Reply, answer, free_port, scripted_server


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_refused_connection_says_so(backend: str) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    async with client_on(backend, api_key=API_KEY, base_url=base_url, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.images.fetch(7)
    assert caught.value.url == f"{base_url}/v6/images/fetch"
    assert caught.value.cause == "connection refused"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_reset_connection_says_so(backend: str) -> None:
    with scripted_server() as server:
        server.script("7", Reply(action="reset"))
        async with client_on(
            backend, api_key=API_KEY, base_url=server.base_url, max_retries=0
        ) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.images.fetch(7)
    assert caught.value.cause in ("the connection was reset", "the server closed the connection")
    assert caught.value.url == f"{server.base_url}/v6/images/fetch"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_answer_cut_off_says_the_server_closed_the_connection(backend: str) -> None:
    with scripted_server() as server:
        server.script("7", Reply(200, {"status": "success", "id": 7}, action="truncated"))
        async with client_on(
            backend, api_key=API_KEY, base_url=server.base_url, max_retries=0
        ) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.images.fetch(7)
    assert caught.value.cause == "the server closed the connection"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_timeout_says_no_answer_came_in_time(backend: str) -> None:
    with scripted_server() as server:
        server.script("7", Reply(action="hang"))
        async with client_on(
            backend, api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=0.3
        ) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.images.fetch(7)
        server.stopping.set()
    assert caught.value.cause == "no answer in time"
    assert caught.value.url == f"{server.base_url}/v6/images/fetch"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_untrusted_certificate_gives_its_complaint_as_the_cause(
    backend: str, hostile: Callable[..., LoopbackServer]
) -> None:
    server = hostile(answer(body=b'{"status": "success", "output": []}'), tls=True)
    async with (
        httpx.AsyncClient() as http_client,
        AsyncModelsLab(
            api_key=API_KEY,
            base_url=server.base_url,
            http_client=http_client if backend == "httpx" else None,
        ) as client,
    ):
        with pytest.raises(CertificateVerificationError) as caught:
            await client.images.fetch(7)
    assert caught.value.cause is not None and "certificate" in caught.value.cause
    assert "http_client" not in caught.value.cause  # the complaint, not the advice
    assert caught.value.url is not None and caught.value.url.startswith(server.base_url)


def test_the_fields_survive_a_copy_for_another_id_and_pickling() -> None:
    error = APIConnectionError(
        "could not talk to it", url="http://127.0.0.1:9/api/x", cause="connection refused"
    )
    for twin in (error.for_request("8"), pickle.loads(pickle.dumps(error))):
        assert (twin.url, twin.cause) == ("http://127.0.0.1:9/api/x", "connection refused")
    assert (APIConnectionError("no fields").url, APIConnectionError("x").cause) == (None, None)


@pytest.mark.parametrize(
    "base_url",
    ["ftp://x", "https://user:pw@modelslab.com/api", "http://example.com/api", "https://a b/"],
)
def test_an_unusable_base_url_names_its_option(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AsyncModelsLab(api_key="k", base_url=base_url)
    assert caught.value.option == "base_url"
    monkeypatch.setenv("MODELSLAB_BASE_URL", base_url)  # read from the environment: the same
    with pytest.raises(ConfigurationError) as from_env:
        AsyncModelsLab(api_key="k")
    assert from_env.value.option == "base_url"
    assert ConfigurationError("no option at fault").option is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.1.2.3/a.png", "its host is 10.1.2.3, a private address"),
        ("http://localhost:9/a.png", "its host 'localhost' is this machine (loopback)"),
    ],
)
async def test_a_download_refused_for_its_address_says_why_in_a_field(
    url: str, why: str, tmp_path: Path
) -> None:
    result = FetchResult.from_body({"status": "success", "id": 1, "output": [url]}, request_id="1")
    async with AsyncModelsLab(api_key="k", base_url="https://modelslab.com/api") as client:
        with pytest.raises(DownloadError) as caught:
            await client.download(result, tmp_path)
    assert caught.value.refused_address is not None
    assert caught.value.refused_address.startswith(why)
    assert "allow_private_downloads" not in caught.value.refused_address  # the why, not the fix
    assert DownloadError("HTTP 404", url=url).refused_address is None


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (httpx.Response(200, html="<!doctype html><p>Welcome</p>"), "an HTML page"),
        (httpx.Response(200, text="ok"), "not JSON"),
        (httpx.Response(200, json=[1, 2]), "JSON but not an object"),
        (httpx.Response(200, text="[" * 100 + "]" * 100), "JSON nested more than 64 levels"),
    ],
)
async def test_an_unreadable_answer_says_what_is_wrong_with_it_without_advice(
    answer: httpx.Response, problem: str, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(return_value=answer)
    async with AsyncModelsLab(api_key=API_KEY, base_url=BASE_URL) as client:
        with pytest.raises(ResponseParseError) as caught:
            await client.images.fetch(7)
    assert caught.value.problem is not None and caught.value.problem.startswith(problem)
    assert "base_url" not in caught.value.problem
    assert caught.value.status_code == 200


@pytest.mark.integration
async def test_an_answer_too_large_to_read_says_so() -> None:
    with scripted_server() as server:
        server.script("7", Reply(200, b"x" * (11 * 2**20), action="stream"))
        async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url) as client:
            with pytest.raises(ResponseParseError) as caught:
                await client.images.fetch(7)
    assert caught.value.problem == "larger than 10 MB"
