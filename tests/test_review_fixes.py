"""Edge cases found in review: each a way an id, a socket or the key could have been lost."""

from __future__ import annotations

import asyncio
import gc
import gzip
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIConnectionError,
    AsyncModelsLab,
    ClientClosedError,
    ConfigurationError,
    DownloadError,
    FetchEndpoint,
    FetchResult,
    InvalidRequestIdError,
    ModelsLab,
    Progress,
)
from modelslab_fetch._aiohttp_backend import AiohttpBackend
from modelslab_fetch._ids import normalize_request_id
from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from tests.conftest import API_KEY, IMAGES_URL, FakeClock, never_answer


def ok(request: httpx.Request) -> httpx.Response:
    import json

    rid = json.loads(request.content)["request_id"]
    return httpx.Response(200, json={"status": "success", "id": rid, "output": ["u"]})


async def test_an_undecodable_body_through_httpx_is_a_typed_error(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )
    )
    with pytest.raises(APIConnectionError, match="DecodingError") as caught:
        await client.images.fetch(1)
    assert caught.value.__context__ is None


async def test_a_closed_http_client_of_yours_is_a_typed_error(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=ok)
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
    assert not client._transport._fallback_backends._bindings  # closed, none opened since
    assert client._transport.closed


def test_loopback_never_goes_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("all_proxy", "http://all.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    backend = AiohttpBackend(max_connections=1)
    assert backend._proxy_for("http://127.0.0.1:8000/api/v6/images/fetch") is None
    assert backend._proxy_for("http://localhost:8000/api/v6/images/fetch") is None
    assert backend._proxy_for("http://[::1]:8000/api/x") is None
    assert backend._proxy_for("https://modelslab.com/api/v6/images/fetch") == (
        "http://all.example:3128"
    )


async def test_a_failing_progress_callback_loses_no_outcome(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=ok)

    def explode(progress: Progress) -> None:
        raise RuntimeError("ui crashed")

    batch = client.images.fetch_many(["1", "2", "3"], on_progress=explode, concurrency=1)
    first = await batch.__anext__()
    assert first.ok  # the outcome in hand is delivered
    with pytest.raises(RuntimeError, match="ui crashed"):
        await batch.__anext__()
    many = client.images.fetch_many([str(n) for n in range(50)], on_progress=explode)
    handed = await many.next_many(256)
    assert len(handed) == 1  # collection stops at the failing callback, nothing dropped
    with pytest.raises(RuntimeError, match="ui crashed"):
        await many.next_many(256)


async def test_going_on_after_a_cancelled_wait_is_an_error_not_a_quiet_end(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=never_answer)
    batch = client.images.wait_many(["1", "2"])
    with anyio.move_on_after(0.05):
        await batch.__anext__()
    with pytest.raises(RuntimeError, match="start a new batch"):
        await batch.__anext__()


async def test_aclose_lets_a_cancellation_of_its_caller_through(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=never_answer)
    batch = client.images.wait_many(["1"])
    with anyio.move_on_after(0.05):
        await batch.__anext__()
    reached_after = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        await batch.aclose()
        reached_after = True
    assert not reached_after


async def test_a_generator_input_is_closed_when_the_batch_stops(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=ok)
    closed = threading.Event()

    def ids() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    async with client.images.fetch_many(ids(), concurrency=2) as batch:
        async for outcome in batch:
            if outcome.index >= 3:
                break
    assert closed.is_set()


async def test_malformed_image_urls_are_download_errors_and_spare_the_others(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.get("https://cdn.example/ok.png").respond(content=b"\x89PNG")

    def result(rid: str, url: str) -> FetchResult:
        body = {"status": "success", "id": rid, "output": [url]}
        return FetchResult.from_body(body, request_id=rid)

    with pytest.raises(DownloadError):
        await client.download(result("1", "http://[::1/x.png"), tmp_path)
    done = await client.download_many(
        [result("1", "http://[::1/x.png"), result("2", "https://cdn.example/ok.png")], tmp_path
    )
    assert [d.ok for d in done] == [False, True]


def test_huge_int_ids_are_invalid_ids() -> None:
    with pytest.raises(InvalidRequestIdError, match="at most"):
        normalize_request_id(10**5000)


def test_a_misdescribed_endpoint_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        FetchEndpoint("/x/{id}", id_field="request_id")
    with pytest.raises(ConfigurationError, match="give one"):
        FetchEndpoint("/x")


def test_a_client_never_closed_is_closed_when_collected(router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=ok)
    client = ModelsLab(api_key=API_KEY)
    assert client.images.fetch(1).succeeded
    assert any(t.name == "modelslab-fetch" for t in threading.enumerate())
    del client
    gc.collect()
    assert not any(t.name == "modelslab-fetch" for t in threading.enumerate())


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(list(argv), streams=Streams(out=io.StringIO(), err=err))
    return code, err.getvalue()


def test_cli_input_problems_are_messages_not_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", API_KEY)
    empty_key = tmp_path / "key"
    empty_key.write_text("\n")
    code, err = run_cli("fetch", "1", "--api-key-file", str(empty_key))
    assert code == 2
    assert "empty" in err
    assert run_cli("wait", "1", "-", "2")[0] == 2
    latin = tmp_path / "ids.txt"
    latin.write_bytes(b"12\xff34\n")
    code, err = run_cli("wait", "--ids-file", str(latin), "--base-url", "http://127.0.0.1:9/api")
    assert code == 2  # checked before any work, named (issue 12)
    assert f"--ids-file {latin} is not UTF-8 text" in err


def test_a_corrupt_results_line_is_skipped_by_download(tmp_path: Path) -> None:
    from modelslab_fetch.cli._results import record_result

    assert record_result({"request_id": "1", "ok": True, "output": [1, 2]}) is None
    assert record_result({"request_id": "1", "ok": True, "output": ["u"]}) is not None


@pytest.mark.integration
async def test_a_gzip_bomb_stops_at_the_cap(clock: FakeClock) -> None:
    from modelslab_fetch import ResponseParseError
    from tests.local_server import Reply, scripted_server

    bomb = gzip.compress(b'{"status": "success", "x": "' + b"0" * (11 * 2**20) + b'"}')
    assert len(bomb) < 100_000
    with scripted_server() as server:
        server.script("1", Reply(200, bomb, {"content-encoding": "gzip"}))
        async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url, clock=clock) as c:
            with pytest.raises(ResponseParseError, match="larger than 10 MB"):
                await c.images.fetch(1)
    await asyncio.sleep(0)
