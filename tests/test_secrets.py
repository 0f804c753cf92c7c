"""The API key never shows: no error, repr, pickle, log line, result or results file holds it.

Whatever the path: every error the wire can cause (a mocked wire, on asyncio and trio), and
whatever a server on 127.0.0.1 echoes back over real sockets (the reason phrase, a header, a
`\\u`-escaped or URL-encoded body, an error page; both HTTP backends, every logger at DEBUG).
The webhook URL's token and the webhook secret likewise. How each spelling is redacted is
tests/test_redaction.py.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    ModelsLab,
    ModelsLabError,
    PollPolicy,
    ResponseParseError,
)
from modelslab_fetch._config import ClientConfig
from modelslab_fetch._http._backends._contract import MAX_RESPONSE_BYTES
from modelslab_fetch._redaction import REDACTED
from tests.backends import asyncio_only, both_backends
from tests.conftest import API_KEY, BACKENDS, BASE_URL, IMAGES_URL, Capture, FakeClock, client_on
from tests.loopback import LoopbackServer, Peer, Reply, ScriptedServer, scripted_server

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


# --- a server on 127.0.0.1 that echoes the request body back, in every form ---------------


# A realistic 60-character key, with "/" and "+" so that JSON's "\/" and the two URL
# encodings (quote keeps "/", quote_plus does not) all differ from the raw key.
KEY = "Zt4/Qm8+pL2vXw9RkT7yN3bH6cJ1dF5gS0aE8uI2oP4qW6eR9tY3uA7sD1fG"


assert len(KEY) == 60


def all_u_escaped(text: str, *, upper: bool = False, every: int = 1) -> str:
    """`text` with every `every`-th character as a JSON \\uXXXX escape."""
    spell = "\\u{:04X}" if upper else "\\u{:04x}"
    return "".join(spell.format(ord(c)) if i % every == 0 else c for i, c in enumerate(text))


# Every spelling of the key a leak could take; module-level, so no test frame holds one
# as a local (traceback locals are checked too).
FORMS = (
    KEY,
    KEY.replace("/", "\\/"),
    all_u_escaped(KEY),
    all_u_escaped(KEY, upper=True),
    all_u_escaped(KEY, every=2),
    urllib.parse.quote(KEY, safe=""),
    urllib.parse.quote(KEY),
    urllib.parse.quote_plus(KEY),
)


def leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if any(form in text for form in FORMS)]


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


SUCCESS = {"status": "success", "id": 1, "output": ["http://127.0.0.1/generations/1-0.png"]}


def response(status: int, body: bytes, *, reason: bytes = b"", headers: bytes = b"") -> bytes:
    reason = reason or {200: b"OK", 400: b"Bad Request", 500: b"Server Error"}[status]
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n%s\r\n%s" % (status, reason, len(body), headers, body)
    )


def escaped_echo(request: bytes, status: int) -> bytes:
    # ensure_ascii JSON, with the key forced to \u escapes (all, upper, every other
    # character) as a value and as an object key.
    echo = json.loads(request)
    body = json.dumps(
        {**SUCCESS, "echo": echo, "again": KEY, "mixed": KEY, KEY: 1}, ensure_ascii=True
    )
    body = body.replace(f'"again": "{KEY}"', f'"again": "{all_u_escaped(KEY, upper=True)}"')
    body = body.replace(f'"mixed": "{KEY}"', f'"mixed": "{all_u_escaped(KEY, every=2)}"')
    body = body.replace(KEY, all_u_escaped(KEY))
    return response(status, body.encode())


def url_echo(request: bytes, status: int) -> bytes:
    query = f"key={urllib.parse.quote_plus(KEY)}&k2={urllib.parse.quote(KEY, safe='')}"
    body = {
        **SUCCESS,
        "output": [f"http://127.0.0.1/generations/1-0.png?{query}"],
        "form": urllib.parse.urlencode(json.loads(request)),
        "path": urllib.parse.quote(KEY),
    }
    return response(status, json_bytes(body))


# Each echo: how the server answers a request whose body is `request`.
ECHOES: dict[str, Callable[[bytes], bytes]] = {
    "reason-400": lambda req: response(400, b'{"error": 1}', reason=req),
    "reason-200": lambda req: response(200, json_bytes(SUCCESS), reason=req),
    "header-400": lambda req: response(400, b'{"error": 1}', headers=b"X-Echo: %s\r\n" % req),
    "header-200": lambda req: response(
        200, json_bytes(SUCCESS), headers=b"X-Echo: %s\r\nX-Key: %s\r\n" % (req, KEY.encode())
    ),
    "escaped-200": lambda req: escaped_echo(req, 200),
    "escaped-400": lambda req: escaped_echo(req, 400),
    "urlencoded-200": lambda req: url_echo(req, 200),
    "urlencoded-500": lambda req: url_echo(req, 500),
    "body-400": lambda req: response(400, req),
    "body-500": lambda req: response(500, json_bytes({"received": req.decode()})),
    "not-json-200": lambda req: response(200, b"oops " + req),
}


# Faults that end in an error of their own, with the key in the request (and the head).
FAULTS = ("oversize", "hang", "drop")


class EchoServer(LoopbackServer):
    """Answers every POST with `self.echo`; `bodies` holds every request body received."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.echo = "body-400"
        self.bodies: list[bytes] = []

    async def _answer(self, peer: Peer) -> None:
        body = (await peer.read()).body
        self.bodies.append(body)
        if self.echo == "hang":
            await peer.wait_for_close()  # until the client gives up and closes
        elif self.echo == "oversize":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE_BYTES + 2)
            await peer.send(head + body + b" " * (MAX_RESPONSE_BYTES + 2 - len(body)))
        elif self.echo != "drop":
            await peer.send(ECHOES[self.echo](body))


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        assert isinstance(server, EchoServer)
        yield server


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, echo_server: EchoServer, clock: FakeClock
) -> AsyncIterator[AsyncModelsLab]:
    async with client_on(
        request.param,
        api_key=KEY,
        base_url=echo_server.base_url,
        clock=clock,
        timeout=0.5,
        max_retries=1,  # a retry, so the retry log line is checked too
    ) as client:
        yield client


def chain_texts(error: BaseException) -> list[str]:
    """Everything an error exposes, over its whole chain, traceback locals included."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # Formatted one by one: "from None" hides __context__ from the default format,
        # but not from an error tracker walking the attributes.
        formatted = traceback.TracebackException.from_exception(
            current, capture_locals=True, compact=True
        )
        formatted.__cause__ = formatted.__context__ = None
        texts += [str(current), repr(current), repr(current.args), "".join(formatted.format())]
        texts.append(repr(vars(current)))
        pickled = pickle.dumps(current)
        texts += [pickled.decode("latin-1"), repr(pickle.loads(pickled))]
        response = getattr(current, "response", None)
        if isinstance(response, httpx.Response):
            texts += [response.text, response.reason_phrase, repr(list(response.headers.items()))]
        pending += [current.__cause__, current.__context__]
    return texts


@pytest.mark.integration
@asyncio_only
@pytest.mark.parametrize("echo", list(ECHOES))
async def test_no_echo_of_the_body_reveals_the_key(
    echo: str, client: AsyncModelsLab, echo_server: EchoServer, logs: Capture
) -> None:
    echo_server.echo = echo
    try:
        result = await client.images.fetch("1")
    except ModelsLabError as error:
        assert echo.endswith(("-400", "-500")) or echo.startswith("not-json")
        texts = chain_texts(error)
    else:
        assert echo.endswith("-200")
        assert result.output, "the result must still be read"
        texts = [repr(result.raw), repr(result), result.model_dump_json(), str(result.raw)]
    assert echo_server.bodies, "the server must have received the request"
    assert KEY.encode() in echo_server.bodies[0], "the key was sent, so it could be echoed"
    texts += logs.lines
    assert any("HTTP" in line for line in logs.lines), "the DEBUG logs must have run"
    assert leaks(texts) == []


@pytest.mark.integration
@asyncio_only
@pytest.mark.parametrize("fault", FAULTS)
async def test_no_failure_reveals_the_key(
    fault: str, client: AsyncModelsLab, echo_server: EchoServer, logs: Capture
) -> None:
    echo_server.echo = fault
    expected = {"oversize": ResponseParseError, "hang": APITimeoutError, "drop": APIConnectionError}
    with pytest.raises(ModelsLabError) as caught:
        await client.images.fetch("1")
    assert type(caught.value) is expected[fault]
    assert leaks(chain_texts(caught.value) + logs.lines) == []


@pytest.mark.integration
@asyncio_only
async def test_the_echoed_escapes_are_redacted_where_they_were(
    echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "escaped-200"
    base_url = echo_server.base_url
    async with AsyncModelsLab(api_key=KEY, base_url=base_url, clock=clock) as client:
        result = await client.images.fetch("1")
    assert result.raw["echo"] == {"request_id": "1", "key": REDACTED}
    assert (result.raw["again"], result.raw["mixed"], result.raw[REDACTED]) == (REDACTED,) * 2 + (
        1,
    )
    assert result.output == SUCCESS["output"]


@pytest.mark.integration
@asyncio_only
async def test_a_reason_phrase_echo_is_redacted_in_the_error(
    client: AsyncModelsLab, echo_server: EchoServer
) -> None:
    echo_server.echo = "reason-400"
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch("1")
    assert caught.value.response.reason_phrase == '{"request_id": "1", "key": "***"}'
    assert leaks([str(caught.value)]) == []  # whether or not the message quotes the phrase


@pytest.mark.integration
def test_cli_results_and_verbose_logs_never_show_an_echoed_key(
    echo_server: EchoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Capture
) -> None:
    from modelslab_fetch.cli import main
    from modelslab_fetch.cli._commands import Streams

    monkeypatch.setenv("MODELSLAB_API_KEY", KEY)
    results = tmp_path / "results.jsonl"
    out, err = io.StringIO(), io.StringIO()
    base_url = echo_server.base_url
    for echo in ("reason-400", "header-400", "escaped-400", "escaped-200"):
        echo_server.echo = echo
        argv = ["wait", "1", "-o", str(results), "--verbose", "--timeout", "5"]
        main([*argv, "--base-url", base_url], streams=Streams(out=out, err=err))
    assert "400" in err.getvalue() + results.read_text()
    assert leaks([out.getvalue(), err.getvalue(), results.read_text(), *logs.lines]) == []


@pytest.mark.integration
@pytest.mark.parametrize("echo", ["reason-400", "escaped-400", "hang"])
def test_the_blocking_client_reveals_the_key_nowhere_either(
    echo: str, echo_server: EchoServer, logs: Capture
) -> None:
    from modelslab_fetch import ModelsLab

    echo_server.echo = echo
    base_url = echo_server.base_url
    with (
        ModelsLab(api_key=KEY, base_url=base_url, timeout=0.5, max_retries=0) as client,
        pytest.raises(ModelsLabError) as caught,
    ):
        client.images.fetch("1")
    assert leaks(chain_texts(caught.value) + logs.lines) == []


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.mark.integration
@asyncio_only
@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, {"status": "error", "message": "Invalid Api Key"}),
        Reply(401, {"message": "unauthorised"}),
        Reply(500, {"echo": API_KEY}),
        Reply(200, b"not json " + API_KEY.encode(), {"content-type": "text/plain"}),
        Reply(action="reset"),
    ],
    ids=["invalid-key", "401", "500-echo", "not-json", "reset"],
)
@pytest.mark.parametrize("backend", ["aiohttp (default)", "httpx"])
async def test_no_key_in_any_log_record_with_real_http_logging(
    backend: str, reply: Reply, server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx's, httpcore's and aiohttp's loggers included
    server.script("3", reply)
    async with httpx.AsyncClient() as http_client:
        client = AsyncModelsLab(
            api_key=API_KEY,
            base_url=server.base_url,
            max_retries=1,
            http_client=http_client if backend == "httpx" else None,
        )
        async with client:
            with pytest.raises(ModelsLabError) as caught:
                await client.images.fetch(3)
    assert any(r.name == "modelslab_fetch" for r in caplog.records)
    if backend == "httpx":
        assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value)


# --- webhooks: the URL (with its token) and the secret ----------------------------------


WEBHOOK_SECRET = "wh-secret-9f8e7d6c5b4a3928-1716151413121110"


WEBHOOK_URL = "https://hooks.example.com/modelslab"


def webhook_spellings(url: str) -> list[str]:
    """The capability URL as a server may echo it back."""
    return [
        url,
        url.replace("/", "\\/"),  # JSON's escaped solidus
        all_u_escaped(url, every=3),
        urllib.parse.quote(url, safe=""),
        urllib.parse.quote(url, safe="").lower().replace("%3a", "%3A"),
        "".join(f"&#{ord(c)};" for c in url),
    ]


@pytest.mark.integration
@asyncio_only
async def test_an_echoed_webhook_url_reaches_no_result_and_no_log(logs: Capture) -> None:
    answers: list[bytes] = []

    async def echo_in_a_header(peer: Peer) -> None:
        await peer.read()
        body = answers.pop(0)
        await peer.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo: %s\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (body[:200], len(body), body)
        )

    with LoopbackServer(echo_in_a_header) as server:
        for backend in BACKENDS:
            async with client_on(
                backend,
                api_key=KEY,
                base_url=server.base_url,
                webhook_url=WEBHOOK_URL,
                webhook_secret=WEBHOOK_SECRET,
                max_retries=0,
            ) as client:
                url = client.webhooks.fields("trk-2")["webhook"]
                token = url.rsplit("/", 1)[1]
                for spelling in webhook_spellings(url):
                    answers.append(
                        b'{"status": "success", "id": 1, "output": ["https://x/a.png"], '
                        b'"meta": {"webhook": "%s", "track_id": "trk-2"}}' % spelling.encode()
                    )
                    result = await client.images.fetch("1")
                    texts = [repr(result.raw), repr(result), result.model_dump_json(), *logs.lines]
                    assert result.meta is not None and result.meta["track_id"] == "trk-2"
                    for text in texts:
                        assert token not in text, spelling
                        assert "hooks.example.com" not in text, spelling
                        assert WEBHOOK_SECRET not in text
    assert any("X-Echo" in line or "x-echo" in line.lower() for line in logs.lines)
