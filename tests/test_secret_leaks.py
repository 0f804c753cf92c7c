"""The API key must not leak through a server that echoes the request body, in any form.

The key travels in the JSON body, so anything that echoes the body hands it back: the
reason phrase, a header, a `\\u`-escaped or URL-encoded JSON body, an error page. Each
echo runs over real sockets on 127.0.0.1, on both HTTP backends, with every logger at
DEBUG; the key must appear in no error (str, repr, pickle, traceback locals over the whole
chain), no result (raw, repr, JSON) and no log line.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import pickle
import re
import threading
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelslab_fetch import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncModelsLab,
    ConfigurationError,
    ModelsLabError,
    ResponseParseError,
)
from modelslab_fetch._http._backends._contract import MAX_RESPONSE_BYTES
from modelslab_fetch._logging import LOGGER_NAMES, KeyRedactingFilter
from modelslab_fetch._logging import install_key_filter as install
from modelslab_fetch._redaction import REDACTED, SHORT_KEY_CHARS, Redactor
from tests.conftest import BACKENDS, FakeClock, client_on

pytestmark = pytest.mark.integration

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


# --- a raw asyncio server on 127.0.0.1 that echoes the request body back ---------------


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


class EchoServer:
    """Answers every POST with `self.echo`, on its own event loop in a thread."""

    def __init__(self) -> None:
        self.echo = "body-400"
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(match[1]) if match else 0)
            self.requests.append(body)
            if self.echo == "hang":
                await reader.read()  # until the client gives up and closes
            elif self.echo == "oversize":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE_BYTES + 2)
                )
                writer.write(body + b" " * (MAX_RESPONSE_BYTES + 2 - len(body)))
                await writer.drain()
            elif self.echo != "drop":
                writer.write(ECHOES[self.echo](body))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client hung up first (oversize, timeout): what these tests cause
        finally:
            writer.close()


@contextmanager
def serving(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> Iterator[int]:
    """Run an asyncio server on 127.0.0.1 in a thread of its own; yield its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    port = 0

    async def main() -> None:
        nonlocal stop, port
        stop = asyncio.Event()
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield port
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    with serving(server.handle) as port:
        server.port = port
        yield server


class RecordingProxy:
    """A "proxy" that only records who connected and what they sent, then hangs up."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.received.append(await asyncio.wait_for(reader.read(65536), 2))
        except (OSError, asyncio.TimeoutError):
            self.received.append(b"")
        finally:
            writer.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    recording = RecordingProxy()
    with serving(recording.handle) as port:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield recording


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's proxy settings would (rightly) make httpx refuse plain-http loopback.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


class Capture(logging.Handler):
    """Keeps every record, formatted with its traceback, as a handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def logs() -> Iterator[Capture]:
    # Every logger at DEBUG, whatever an earlier test (the CLI's --verbose) left behind.
    root = logging.getLogger()
    names = ["", "modelslab_fetch", "httpx", "httpcore"]
    levels = {name: logging.getLogger(name).level for name in names}
    capture = Capture()
    root.addHandler(capture)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, echo_server: EchoServer, clock: FakeClock
) -> AsyncIterator[AsyncModelsLab]:
    async with client_on(
        request.param,
        api_key=KEY,
        base_url=f"http://127.0.0.1:{echo_server.port}/api",
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
    assert echo_server.requests, "the server must have received the request"
    assert KEY.encode() in echo_server.requests[0], "the key was sent, so it could be echoed"
    texts += logs.lines
    assert any("HTTP" in line for line in logs.lines), "the DEBUG logs must have run"
    assert leaks(texts) == []


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


async def test_the_echoed_escapes_are_redacted_where_they_were(
    echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "escaped-200"
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    async with AsyncModelsLab(api_key=KEY, base_url=base_url, clock=clock) as client:
        result = await client.images.fetch("1")
    assert result.raw["echo"] == {"request_id": "1", "key": REDACTED}
    assert (result.raw["again"], result.raw["mixed"], result.raw[REDACTED]) == (REDACTED,) * 2 + (
        1,
    )
    assert result.output == SUCCESS["output"]


async def test_a_reason_phrase_echo_is_redacted_in_the_error(
    client: AsyncModelsLab, echo_server: EchoServer
) -> None:
    echo_server.echo = "reason-400"
    with pytest.raises(APIStatusError) as caught:
        await client.images.fetch("1")
    assert caught.value.response.reason_phrase == '{"request_id": "1", "key": "***"}'
    assert leaks([str(caught.value)]) == []  # whether or not the message quotes the phrase


def test_cli_results_and_verbose_logs_never_show_an_echoed_key(
    echo_server: EchoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Capture
) -> None:
    from modelslab_fetch.cli import main
    from modelslab_fetch.cli._commands import Streams

    monkeypatch.setenv("MODELSLAB_API_KEY", KEY)
    results = tmp_path / "results.jsonl"
    out, err = io.StringIO(), io.StringIO()
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    for echo in ("reason-400", "header-400", "escaped-400", "escaped-200"):
        echo_server.echo = echo
        argv = ["wait", "1", "-o", str(results), "--verbose", "--timeout", "5"]
        main([*argv, "--base-url", base_url], streams=Streams(out=out, err=err))
    assert "400" in err.getvalue() + results.read_text()
    assert leaks([out.getvalue(), err.getvalue(), results.read_text(), *logs.lines]) == []


# --- proxies -----------------------------------------------------------------------------


async def test_a_plain_http_proxy_is_refused_before_the_key_is_sent(
    proxy: RecordingProxy, echo_server: EchoServer
) -> None:
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    async with httpx.AsyncClient() as http_client:
        with pytest.raises(ConfigurationError) as caught:
            AsyncModelsLab(api_key=KEY, base_url=base_url, http_client=http_client)
    message = str(caught.value)
    assert "unencrypted" in message and "trust_env=False" in message and "NO_PROXY" in message
    assert proxy.received == [] and echo_server.requests == []


@pytest.mark.parametrize(
    "make_client",
    [
        lambda proxy_url: httpx.AsyncClient(proxy=proxy_url, trust_env=False),
        lambda proxy_url: httpx.AsyncClient(
            mounts={"http://": httpx.AsyncHTTPTransport(proxy=proxy_url)}, trust_env=False
        ),
    ],
    ids=["proxy=", "mounts="],
)
async def test_an_explicit_proxy_over_plain_http_is_refused(
    make_client: Callable[[str], httpx.AsyncClient],
) -> None:
    async with make_client("http://127.0.0.1:9") as http_client:
        with pytest.raises(ConfigurationError):
            AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=http_client)
        # Over https the proxy sees only a CONNECT tunnel: allowed.
        AsyncModelsLab(api_key=KEY, base_url="https://modelslab.com/api", http_client=http_client)


async def test_without_the_environment_proxy_requests_go_direct(
    proxy: RecordingProxy, echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "reason-200"
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    async with (
        httpx.AsyncClient(trust_env=False) as http_client,
        AsyncModelsLab(api_key=KEY, base_url=base_url, http_client=http_client) as client,
    ):
        assert (await client.images.fetch("1")).succeeded
    assert len(echo_server.requests) == 1 and proxy.received == []


async def test_the_default_backend_never_proxies_loopback(
    proxy: RecordingProxy, echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "reason-200"
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    async with AsyncModelsLab(api_key=KEY, base_url=base_url, clock=clock) as client:
        assert (await client.images.fetch("1")).succeeded
        assert (await client.images.fetch("2")).succeeded
    assert len(echo_server.requests) == 2 and proxy.received == []


# --- short keys: whole tokens only -------------------------------------------------------


async def test_a_short_key_leaves_responses_that_do_not_contain_it_unchanged() -> None:
    from modelslab_fetch.testing import Simulator, SimulatorApp, in_process_client

    simulator = Simulator(api_key="png", seed=1)
    app = SimulatorApp(simulator, seed=1)
    ids = [simulator.queue(images=3) for _ in range(3)]
    async with in_process_client(app, api_key="png") as client:
        for rid in ids:
            result = await client.images.fetch(rid)
            assert result.succeeded
            assert len(result.output) == 3
            assert all(url.endswith(".png") and "***" not in url for url in result.output)
            assert "***" not in json.dumps(result.raw)


def test_a_short_key_is_redacted_only_as_a_whole_token() -> None:
    assert len("png") < SHORT_KEY_CHARS
    redactor = Redactor("png")
    untouched = [
        "http://127.0.0.1/generations/1-0.png",
        '{"output": ["https:\\/\\/cdn\\/a.png?x=1"]}',
        "image/png",
        "apng pngs png-like",
        "monkey=png",
        "%70ng.png",
    ]
    for text in untouched:
        assert redactor.text(text) == text
        assert redactor.bytes(text.encode()) == text.encode()
    redacted = {
        '{"key": "png"}': '{"key": "***"}',
        '{"key": "\\u0070\\u006E\\u0067"}': '{"key": "***"}',
        '"{\\"key\\": \\"png\\"}"': '"{\\"key\\": \\"***\\"}"',
        "png": "***",
        "?key=png&x=1": "?key=***&x=1",
        "api_key=png": "api_key=***",
        "(b'X-Echo', b'png')": "(b'X-Echo', b'***')",
    }
    for text, expected in redacted.items():
        assert redactor.text(text) == expected
    assert redactor.json({"png": ["png", "a.png"], "k": {"v": "png"}}) == {
        "***": ["***", "a.png"],
        "k": {"v": "***"},
    }
    headers = httpx.Headers({"content-type": "image/png", "x-echo": "png"})
    assert dict(redactor.headers(headers)) == {"content-type": "image/png", "x-echo": "***"}


def test_a_long_key_is_redacted_in_every_form() -> None:
    redactor = Redactor(KEY)
    spellings = [
        *FORMS,
        json.dumps(KEY, ensure_ascii=True)[1:-1],
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(KEY, safe="")),
        repr(KEY.encode())[2:-1],
        "".join(f"&#x{ord(c):x};" for c in KEY),
        "".join(f"&#{ord(c)};" for c in KEY),
    ]
    for spelling in spellings:
        text = f"before {spelling} after"
        assert redactor.text(text) == "before *** after", spelling
        assert redactor.bytes(text.encode()) == b"before *** after"
        assert redactor.json({spelling: [spelling]}) == {"***": ["***"]}
    clean = httpx.Headers({"content-type": "application/json"})
    assert redactor.headers(clean) is clean
    answer = {"status": "success", "output": ["https://x/a.png?x=%20"], "tip": "20% off"}
    assert redactor.json(answer) is answer  # nothing to redact: not even copied
    assert KEY not in repr(redactor) and KEY not in repr(redactor.secret(KEY.encode()))
    with pytest.raises(TypeError):
        pickle.dumps(redactor.secret(KEY.encode()))


def test_a_non_ascii_key_is_redacted_in_its_escaped_forms() -> None:
    key = "clé ключ-🔑-0123456789"
    redactor = Redactor(key)
    for spelling in (
        key,
        json.dumps(key)[1:-1],
        urllib.parse.quote(key),
        urllib.parse.quote_plus(key),
        repr(key.encode())[2:-1],
    ):
        assert redactor.text(f"<{spelling}>") == "<***>", spelling


# --- logging -----------------------------------------------------------------------------


def test_the_log_filter_is_installed_once_per_logger_and_covers_every_live_key(
    logs: Capture,
) -> None:
    first = AsyncModelsLab(api_key=KEY)
    second = AsyncModelsLab(api_key="another-key-0123456789-abcdef")
    install()
    for name in LOGGER_NAMES:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, KeyRedactingFilter) for f in filters) == 1, name
    for name in ("httpcore.http11", "httpx", "modelslab_fetch"):
        # WARNING: a CLI run elsewhere in the session may have raised our logger's level.
        logging.getLogger(name).warning("a=%s b=%r", KEY, b"another-key-0123456789-abcdef")
    assert len(logs.lines) == 6
    assert leaks(logs.lines) == []
    assert not any("another-key-0123456789-abcdef" in line for line in logs.lines)
    assert "a=*** b=b'***'" in logs.lines[0]
    del first, second
    gc.collect()
    logging.getLogger("httpx").warning("gone %s", "another-key-0123456789-abcdef")
    assert logs.lines[-2].endswith("gone another-key-0123456789-abcdef"), "held weakly"


def test_the_log_filter_redacts_tracebacks_and_leaves_malformed_records_alone(
    logs: Capture,
) -> None:
    client = AsyncModelsLab(api_key=KEY)
    logger = logging.getLogger("httpcore.connection")
    try:
        raise RuntimeError(f"echo {KEY}")
    except RuntimeError:
        logger.warning("failed", exc_info=True)
    assert "RuntimeError: echo ***" in logs.lines[0]
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "%d", ("x",), None)
    assert KeyRedactingFilter().filter(record)  # kept, untouched: the handler reports it
    assert (record.msg, record.args) == ("%d", ("x",))
    assert leaks(logs.lines) == []
    del client


async def test_the_proxy_check_reads_the_mounts_if_httpx_internals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def moved(self: httpx.AsyncClient, url: httpx.URL) -> None:
        raise AttributeError("_transport_for_url is gone")

    monkeypatch.setattr(httpx.AsyncClient, "_transport_for_url", moved)
    async with httpx.AsyncClient(proxy="http://127.0.0.1:9", trust_env=False) as proxied:
        with pytest.raises(ConfigurationError):
            AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=proxied)
    async with httpx.AsyncClient(trust_env=False) as direct:
        AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=direct)


@pytest.mark.parametrize("echo", ["reason-400", "escaped-400", "hang"])
def test_the_blocking_client_reveals_the_key_nowhere_either(
    echo: str, echo_server: EchoServer, logs: Capture
) -> None:
    from modelslab_fetch import ModelsLab

    echo_server.echo = echo
    base_url = f"http://127.0.0.1:{echo_server.port}/api"
    with (
        ModelsLab(api_key=KEY, base_url=base_url, timeout=0.5, max_retries=0) as client,
        pytest.raises(ModelsLabError) as caught,
    ):
        client.images.fetch("1")
    assert leaks(chain_texts(caught.value) + logs.lines) == []


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


def test_the_webhook_url_is_redacted_with_its_token_in_every_form() -> None:
    client = AsyncModelsLab(api_key=KEY, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET)
    url = client.webhooks.fields("trk-1")["webhook"]
    token = url.rsplit("/", 1)[1]
    redactor = client._transport._redactor
    for spelling in webhook_spellings(url):
        text = f'{{"meta": {{"webhook": "{spelling}", "seed": 1}}}}'
        redacted = redactor.text(text)
        assert redacted == '{"meta": {"webhook": "***", "seed": 1}}', spelling
        assert redactor.bytes(text.encode()) == redacted.encode()
        assert redactor.json({"webhook": spelling}) == {"webhook": "***"}
    # The token never survives, even echoed inside a longer text.
    assert token not in redactor.text(f"posted to {url} at noon")
    # Without webhooks, the same text is left alone.
    plain = AsyncModelsLab(api_key=KEY)._transport._redactor
    assert plain.text(f"posted to {url}") == f"posted to {url}"


async def test_an_echoed_webhook_url_reaches_no_result_and_no_log(logs: Capture) -> None:
    answers: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(match[1]) if match else 0)
        body = answers.pop(0)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo: %s\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (body[:200], len(body), body)
        )
        await writer.drain()
        writer.close()

    with serving(handle) as port:
        for backend in BACKENDS:
            async with client_on(
                backend,
                api_key=KEY,
                base_url=f"http://127.0.0.1:{port}/api",
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


def test_the_log_filter_redacts_the_webhook_secret(logs: Capture) -> None:
    client = AsyncModelsLab(api_key=KEY, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET)
    url = client.webhooks.fields("trk-3")["webhook"]
    logging.getLogger("modelslab_fetch").warning("settings: %s %s", WEBHOOK_SECRET, url)
    assert WEBHOOK_SECRET not in logs.lines[0]
    assert url.rsplit("/", 1)[1] not in logs.lines[0]
    del client
