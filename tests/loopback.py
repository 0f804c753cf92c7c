"""A server on loopback that answers what the test says: the one server double of the tests.

One engine, `LoopbackServer`: a raw asyncio TCP server on 127.0.0.1 (or another loopback
address) on an ephemeral port, run on its own event loop in a background thread, so it
keeps answering (or misbehaving) whatever the client's loop or thread is doing. Every
accepted connection runs a *behaviour*: an async function given a `Peer`. A test says
what the server answers in one of two ways:

Per connection, byte by byte (hostile and odd servers; each reads the request first):
    answer(status, body, headers, reason): a complete response with Content-Length.
    raw(data): exactly `data` (any status line, reason phrase, headers, body), then close.
    drip_body(body, interval): headers, then the body one byte every `interval` s.
    drip_headers(interval): a status line, then one header line every `interval` s, forever.
    never_answer(): reads the request and says nothing until the client leaves.
    hang_up(): closes every connection as soon as it is accepted (a connection counter).
    gzip_bomb(size, layers): `size` zero bytes, gzip-encoded `layers` times (1 or 2),
        generated on the fly as it is sent: 1 GiB is ~1 MB in one layer, a few kB in two.
    or your own `async def behave(peer)`, with `peer.read()` (one parsed request),
    `peer.send(bytes)`, `peer.reset()` (a TCP RST), `peer.wait_for_close()`.

Per request, as ModelsLab would (`scripted_server()`, a `ScriptedServer`): HTTP/1.1 with
keep-alive; each POST is answered by the `Reply`s scripted for its request id (JSON, any
status and headers, or a fault: "reset", "reset-mid", "truncated", "hang", "stream"); each
GET by the file put at its path (`file_url`), else 404. It records every POST (`seen`) and
GET (`gets`), and can stand in for a webhook receiver (`default=` answers every POST no
script names; `wait_for_posts`).

TLS (trustme): `tls_server_context(ca, ...)` for a server, `tls_client_context(ca)` for a
client that trusts `ca`; `LoopbackServer(..., ssl_context=...)` then speaks TLS.

Fixtures (registered for every module by tests/conftest.py):
    hostile: `hostile(behaviour, tls=False) -> LoopbackServer`, started now, stopped at
        teardown. With `tls=True` it speaks TLS with a certificate for 127.0.0.1 and
        localhost issued by the `tls_ca` fixture's CA, serving the CA in the chain (a
        client that does not trust it sees a self-signed certificate in the chain).
    tls_ca: the test's own `trustme.CA`, trusted by nobody by default; `ca_file`: its
        certificate in a PEM file.
    recording_proxy: a `LoopbackServer` posing as an HTTP forward proxy; it answers 502
        and counts every connection in `.connections` (tests assert it stays at 0).

Every server: `.url(path)`, `.base_url` (its `/api`, for `AsyncModelsLab`), `.port`,
`.requests` (the head of every request read, bytes up to the blank line), `.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
import ssl
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

# SO_LINGER on, for 0 seconds: closing the socket then sends a RST, not a FIN.
_LINGER_ZERO = struct.pack("ii", 1, 0)


def free_port() -> int:
    """A port nothing listens on (for a server the test starts in another process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Request:
    """One HTTP request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    head: bytes
    """The request line and headers, as received, up to the blank line."""


class Peer:
    """One accepted connection, as a behaviour sees it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: LoopbackServer
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.server = server

    async def read(self) -> Request:
        """Read one request (head and Content-Length body) and record its head."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.server.requests.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, path = [*lines[0].split(" "), "", ""][:2]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Request(method, path, headers, body, head)

    async def read_request(self) -> bytes:
        """Read one request; return its head."""
        return (await self.read()).head

    async def send(self, data: bytes) -> None:
        """Write `data` and wait until the socket took it."""
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Drop the connection with a TCP RST, as a crashing server or a middlebox does."""
        self.writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO
        )
        self.writer.transport.abort()

    async def wait_for_close(self) -> None:
        """Return once the client has closed its end."""
        while await self.reader.read(2**16):
            pass


Behaviour = Callable[[Peer], Awaitable[None]]


class LoopbackServer:
    """A TCP server on a loopback address whose every connection runs `behaviour`."""

    def __init__(
        self,
        behaviour: Behaviour,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.behaviour = behaviour
        self.host = host
        self.requests: list[bytes] = []
        self.connections = 0
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def scheme(self) -> str:
        """http, or https for the TLS variant."""
        return "https" if self._ssl else "http"

    def url(self, path: str = "/") -> str:
        """The URL of `path` on this server."""
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        """A `base_url` for `AsyncModelsLab` pointing here."""
        return self.url("/api")

    def start(self) -> LoopbackServer:
        """Start listening on an ephemeral port (OSError if `host` is not routed here)."""
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.base_events.Server:
        # The backlog is large: a burst of connections (many deliveries at once) must queue,
        # not be refused, unless a test wants refusals.
        return await asyncio.start_server(self._serve, self.host, 0, ssl=self._ssl, backlog=1024)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.behaviour(Peer(reader, writer, self))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, as clients facing these servers should
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    def stop(self) -> None:
        """Stop listening, end every connection, and stop the thread."""

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ behaviours by the byte


def response_head(
    status: int = 200,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    reason: str | None = None,
) -> bytes:
    """A status line and headers, ending in the blank line; `reason` by default is the
    standard phrase of `status` (none for a code without one)."""
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    pairs = list(headers.items()) if isinstance(headers, dict) else headers or []
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(
    status: int = 200,
    body: bytes = b'{"status": "success", "id": 1, "output": []}',
    headers: dict[str, str] | None = None,
    reason: str = "OK",
) -> Behaviour:
    """A complete response with a Content-Length, then the connection closes."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        all_headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
            **(headers or {}),
        }
        await peer.send(response_head(status, all_headers, reason) + body)

    return behave


def raw(data: bytes) -> Behaviour:
    """Exactly `data`, whatever it is, then the connection closes."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        await peer.send(data)

    return behave


def drip_body(
    body: bytes = b'{"status": "success", "id": 1, "output": ["https://x/a.png"], "x": 1}',
    interval: float = 0.25,
    content_type: str = "application/json",
) -> Behaviour:
    """Headers at once, then `body` one byte every `interval` seconds."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        await peer.send(response_head(200, headers))
        for byte in body:
            await asyncio.sleep(interval)
            await peer.send(bytes([byte]))
        await peer.wait_for_close()

    return behave


def drip_headers(interval: float = 0.25) -> Behaviour:
    """A status line, then one header line every `interval` seconds, never ending."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        await peer.send(b"HTTP/1.1 200 OK\r\n")
        count = 0
        while True:
            await asyncio.sleep(interval)
            count += 1
            await peer.send(f"X-Drip-{count}: {count}\r\n".encode())

    return behave


def never_answer() -> Behaviour:
    """Read the request, then say nothing until the client leaves."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        await peer.wait_for_close()

    return behave


def hang_up() -> Behaviour:
    """Close the connection at once, reading nothing: the server only counts connections."""

    async def behave(peer: Peer) -> None:
        return None

    return behave


_BLOCK = 2**20


def _gzip_of_zeros(size: int) -> Iterator[bytes]:
    """A gzip member of `size` zero bytes, built from one repeated deflate block.

    A full flush after each MiB resets the compressor, so every MiB of zeros compresses
    to the same bytes: computed once, then repeated, which makes a GiB cost nothing.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(_BLOCK)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip header: deflate, no name
    blocks, rest = divmod(size, _BLOCK)
    if blocks:
        yield first
    for _ in range(blocks - 1):
        yield block
    tail = compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FINISH)
    yield tail
    # The trailer is computed only if the client read this far (none of ours do).
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    yield struct.pack("<II", crc, size & 0xFFFFFFFF)


def bomb_stream(size: int, layers: int) -> Iterator[bytes]:
    """`size` zero bytes gzip-encoded `layers` times (1 or 2), in chunks, made on the fly."""
    inner = _gzip_of_zeros(size)
    if layers == 1:
        yield from inner
        return
    assert layers == 2, "one or two layers"
    outer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    pending = bytearray()
    for chunk in inner:
        pending += outer.compress(chunk)
        if len(pending) >= 2**14:
            yield bytes(pending)
            pending.clear()
    yield bytes(pending) + outer.flush()


def gzip_bomb(
    size: int, layers: int = 1, *, status: int = 200, content_type: str = "application/json"
) -> Behaviour:
    """`size` zero bytes, gzip-encoded `layers` times, streamed until the client leaves."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        headers = {
            "Content-Type": content_type,
            "Content-Encoding": ", ".join(["gzip"] * layers),
            "Connection": "close",
        }
        await peer.send(response_head(status, headers, "OK"))
        for chunk in bomb_stream(size, layers):
            await peer.send(chunk)

    return behave


# ------------------------------------------------------------ answers by the request id


@dataclass
class Reply:
    """One scripted answer.

    `action`: "reply" (default); "reset" drops the connection before answering;
    "reset-mid" sends the headers and part of the body, then resets; "truncated"
    promises more body than it sends, then closes; "hang" never answers (until the
    server's `stopping` is set, or 10 s); "stream" sends `body` (bytes) in chunks without
    a Content-Length.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "reply"


@dataclass
class Seen:
    """One POST the scripted server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-cased names."""
    at: float = 0.0
    """When it arrived, on time.monotonic."""


_NOT_FOUND = Reply(200, {"status": "error", "message": "Request not found"})


class ScriptedServer(LoopbackServer):
    """A ModelsLab stand-in: each POST answered by the replies scripted for its request id."""

    def __init__(self, *, default: Reply = _NOT_FOUND) -> None:
        super().__init__(self._serve_http)
        self.default = default
        """The answer to a POST whose request id has no script."""
        self.scripts: dict[str, list[Reply]] = {}
        self.files: dict[str, bytes] = {}
        """What a GET of each path answers (an output file); other paths are 404."""
        self.gets: list[str] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        """Set: every "hang" lets go (its request fails), as does stopping the server."""

    def file_url(self, path: str, content: bytes) -> str:
        """Serve `content` at `path` (as a CDN would an output); return its URL."""
        self.files[path] = content
        return self.url(path)

    def script(self, request_id: str, *replies: Reply) -> None:
        """Answer `request_id` with `replies` in turn, repeating the last."""
        with self.lock:
            self.scripts[request_id] = list(replies)

    def next_reply(self, request_id: str) -> Reply:
        """The answer for the next POST of `request_id`."""
        with self.lock:
            replies = self.scripts.get(request_id)
            if not replies:
                return self.default
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def posts(self) -> list[Seen]:
        """The POSTs received so far."""
        with self.lock:
            return list(self.seen)

    def wait_for_posts(self, count: int, timeout: float) -> list[Seen]:
        """The POSTs, once there are `count` of them (or the timeout has passed)."""
        deadline = time.monotonic() + timeout
        while len(self.posts()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.posts()

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

    async def _serve_http(self, peer: Peer) -> None:
        # HTTP/1.1 keep-alive: requests on one connection until the client closes it
        # (or asks to), or an answer ends the connection.
        while True:
            try:
                request = await peer.read()
            except asyncio.IncompleteReadError:
                return  # the client closed its end between requests
            if request.method == "GET":
                keep = await self._get(peer, request)
            elif request.method == "POST":
                keep = await self._post(peer, request)
            else:
                await peer.send(response_head(501, {"content-length": "0", "connection": "close"}))
                keep = False
            if not keep or request.headers.get("connection", "").lower() == "close":
                return

    async def _get(self, peer: Peer, request: Request) -> bool:
        with self.lock:
            self.gets.append(request.path)
            content = self.files.get(request.path)
        headers = {"content-type": "image/png", "content-length": str(len(content or b""))}
        await peer.send(response_head(404 if content is None else 200, headers) + (content or b""))
        return True

    async def _post(self, peer: Peer, request: Request) -> bool:
        body = json.loads(request.body or b"{}")
        with self.lock:
            self.seen.append(Seen(request.path, body, request.headers, time.monotonic()))
        request_id = str(body.get("request_id") or request.path.rsplit("/", 1)[-1])
        reply = self.next_reply(request_id)
        if reply.action == "reset":
            peer.reset()
            return False
        if reply.action == "hang":
            deadline = time.monotonic() + 10
            # Polled: `stopping` is a threading.Event, set from the test's own thread.
            while not self.stopping.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return False
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        if reply.action in ("reset-mid", "truncated"):
            promised = {
                "content-type": "application/json",
                "content-length": str(len(payload) + 1000),
            }
            await peer.send(response_head(reply.status, promised) + payload[: len(payload) // 2])
            if reply.action == "reset-mid":
                peer.reset()
            return False
        if reply.action == "stream":
            chunked = {"content-type": "application/json", "transfer-encoding": "chunked"}
            await peer.send(response_head(reply.status, chunked))
            for start in range(0, len(payload), 2**16):
                chunk = payload[start : start + 2**16]
                await peer.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await peer.send(b"0\r\n\r\n")
            return False
        lines = [*{"content-type": "application/json", **reply.headers}.items()]
        lines.append(("content-length", str(len(payload))))
        await peer.send(response_head(reply.status, lines) + payload)
        return True


@contextlib.contextmanager
def scripted_server(*, default: Reply = _NOT_FOUND) -> Iterator[ScriptedServer]:
    """A started `ScriptedServer`, stopped (every hang let go) when the block ends."""
    with ScriptedServer(default=default) as server:
        assert isinstance(server, ScriptedServer)
        yield server


# ------------------------------------------------------------------------------ TLS


def tls_client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client `ssl.SSLContext` that trusts `ca` (and nothing else)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_server_context(
    ca: trustme.CA,
    *names: str,
    client_ca: trustme.CA | None = None,
    serve_ca: bool = False,
) -> ssl.SSLContext:
    """A server context with a certificate from `ca` for `names` (default: 127.0.0.1 and
    localhost). `client_ca`: require a client certificate it issued. `serve_ca`: end the
    chain in the CA itself, as a self-signed setup serves it, so that an untrusting client
    says "self-signed certificate in certificate chain"."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    if serve_ca:
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "chain.pem")
            path.write_bytes(chain + ca.cert_pem.bytes())
            with leaf.private_key_pem.tempfile() as key:
                context.load_cert_chain(path, key)
    else:
        leaf.configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def tls_ca() -> trustme.CA:
    """A certificate authority made for this test, trusted by nobody by default."""
    return trustme.CA()


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    """The `tls_ca` fixture's certificate in a PEM file (for `verify=` or SSL_CERT_FILE)."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def hostile(tls_ca: trustme.CA) -> Iterator[Callable[..., LoopbackServer]]:
    """Start servers: `hostile(behaviour, tls=False)`; all stop at teardown."""
    servers: list[LoopbackServer] = []

    def start(behaviour: Behaviour, *, tls: bool = False) -> LoopbackServer:
        context = tls_server_context(tls_ca, serve_ca=True) if tls else None
        server = LoopbackServer(behaviour, ssl_context=context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def recording_proxy() -> Iterator[LoopbackServer]:
    """A forward proxy on 127.0.0.1 that records every connection and answers 502."""

    async def behave(peer: Peer) -> None:
        await peer.read()
        await peer.send(response_head(502, {"Content-Length": "0", "Connection": "close"}))

    with LoopbackServer(behave) as server:
        yield server
