"""A sweep of every error path: the API key must appear in no exception, repr or log record."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, ModelsLab, ModelsLabError, PollPolicy
from modelslab_fetch._config import ClientConfig
from tests.backends import both_backends
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL, FakeClock

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

ECHO = {"received": {"key": API_KEY, "request_id": "1"}}

SCENARIOS: dict[str, list[Any]] = {
    "invalid-key-body": [
        httpx.Response(200, json={"status": "error", "message": "Invalid Api Key"})
    ],
    "401": [httpx.Response(401, json=ECHO)],
    "403": [httpx.Response(403, text=f"forbidden for key {API_KEY}")],
    "404-echo": [httpx.Response(404, json=ECHO)],
    "429": [httpx.Response(429, headers={"Retry-After": "1"}, json=ECHO)] * 50,
    "429-too-long": [httpx.Response(429, headers={"Retry-After": "9999"})],
    "502-html": [httpx.Response(502, html=f"<html>{API_KEY}</html>")] * 50,
    "redirect": [httpx.Response(302, headers={"Location": "https://evil.example/x"})],
    "not-json": [httpx.Response(200, text=f"oops {API_KEY}")],
    "json-list": [httpx.Response(200, json=[ECHO])],
    "wrong-shape": [httpx.Response(200, json={"status": 5, **ECHO})],
    "connect-error": [httpx.ConnectError(f"refused {API_KEY}")] * 50,
    "timeout": [httpx.ReadTimeout("slow")] * 50,
    "failed": [httpx.Response(200, json={"status": "failed", "id": 1, **ECHO})],
    "processing-forever": [httpx.Response(200, json={"status": "processing", "eta": 5, **ECHO})]
    * 50,
    "unknown-status": [httpx.Response(200, json={"status": API_KEY})] * 50,
}


def texts_of(error: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        if isinstance(current, ModelsLabError):
            yield repr(vars(current))
            result = getattr(current, "result", None)
            if result is not None:
                yield repr(result)
                yield result.model_dump_json()
                yield repr(result.raw)
            response = getattr(current, "response", None)
            if isinstance(response, httpx.Response):
                yield response.text
                yield repr(response.request.content)
                yield repr(response.request.headers)
        if isinstance(current, httpx.RequestError):
            yield repr(current.request.content)
        current = current.__cause__ or current.__context__


def log_texts(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)
        yield record.exc_text or ""
    yield caplog.text


@pytest.mark.parametrize("call", ["fetch", "wait"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_no_error_path_reveals_the_key(
    scenario: str,
    call: str,
    clock: FakeClock,
    router: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router.post(IMAGES_URL).side_effect = list(SCENARIOS[scenario])
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, poll_policy=PollPolicy()) as client:
        try:
            outcome: Any = (
                await client.images.fetch("1")
                if call == "fetch"
                else await client.images.wait("1", timeout=30)
            )
        except ModelsLabError as error:
            texts = list(texts_of(error))
            texts.append(repr(pickle.loads(pickle.dumps(error))))
        else:
            texts = [repr(outcome), outcome.model_dump_json(), repr(outcome.raw)]
        texts += [repr(client), repr(client.images), repr(client._transport)]
    texts += list(log_texts(caplog))
    assert caplog.records, "the sweep should have produced log records to inspect"
    leaks = [text for text in texts if API_KEY in text]
    assert leaks == []


def test_reprs_of_clients_and_config_hide_the_key() -> None:
    async_client = AsyncModelsLab(api_key=API_KEY)
    sync_client = ModelsLab(api_key=API_KEY)
    config = ClientConfig.resolve(api_key=API_KEY, base_url=None, timeout=1, max_retries=1)
    for obj in (async_client, sync_client, config, config.api_key, vars(async_client)):
        assert API_KEY not in repr(obj)
        assert API_KEY not in str(obj)
    sync_client.close()


def test_errors_survive_pickling_with_their_fields() -> None:
    router_free = httpx.Response(404, request=httpx.Request("POST", f"{BASE_URL}/x"))
    from modelslab_fetch import APIStatusError

    error = APIStatusError("gone", response=router_free, request_id="9")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is APIStatusError
    assert (clone.status_code, clone.request_id, str(clone)) == (404, "9", "request 9: gone")


@pytest.mark.integration
@pytest.mark.parametrize("key_given", ["right", "wrong"])
def test_cli_runs_and_results_files_never_show_the_key(
    key_given: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io

    from modelslab_fetch.cli import main
    from modelslab_fetch.cli._commands import Streams
    from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server

    caplog.set_level(logging.DEBUG)
    simulator = Simulator(api_key=API_KEY, seed=2)
    faults = Faults(error_rate=0.1, edge_page_rate=0.05, truncate_rate=0.05, retry_after=0.1)
    app = SimulatorApp(simulator, faults=faults, seed=2)
    ids = [simulator.queue(), simulator.queue(final="failed"), simulator.queue(ready_in=0.2)]
    key = API_KEY if key_given == "right" else API_KEY + "-WRONG"
    monkeypatch.setenv("MODELSLAB_API_KEY", key)
    results = tmp_path / "results.jsonl"
    out, err = io.StringIO(), io.StringIO()
    with simulator_server(app) as base_url:
        for argv in (
            ["wait", *ids, "-o", str(results), "--verbose", "--dir", str(tmp_path / "i")],
            ["fetch", *ids, "--json", "--verbose"],
            ["wait", *ids, "--json", "--verbose", "--timeout", "5"],
        ):
            main([*argv, "--base-url", base_url], streams=Streams(out=out, err=err))
    # A wrong key stops the run before anything is recorded: there may be no results file.
    written = results.read_text() if results.exists() else ""
    texts = [out.getvalue(), err.getvalue(), written, *log_texts(caplog)]
    texts += [p.name for p in tmp_path.rglob("*")]
    assert (
        "request" in err.getvalue() or "succeeded" in err.getvalue() or "API key" in err.getvalue()
    )
    assert all(API_KEY not in text for text in texts)


async def test_an_echo_in_headers_or_json_escaped_is_redacted(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    key = "sk/with/slashes-" + API_KEY
    escaped = key.replace("/", "\\/")
    router.post(IMAGES_URL).respond(
        302, headers={"Location": f"https://evil.example/?k={key}", "X-Echo": key}
    )
    async with AsyncModelsLab(api_key=key, clock=clock) as client:
        with pytest.raises(ModelsLabError) as caught:
            await client.images.fetch(1)
        assert key not in str(caught.value)
        response = caught.value.response  # type: ignore[attr-defined]
        assert all(key not in value for value in response.headers.values())
        router.post(IMAGES_URL).respond(
            200, content=('{"status": "success", "echo": "' + escaped + '"}').encode()
        )
        result = await client.images.fetch(1)
    assert key not in repr(result.raw)
    assert escaped not in result.model_dump_json()
