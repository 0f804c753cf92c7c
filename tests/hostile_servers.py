"""Hostile servers on 127.0.0.1 over real sockets, scripted per test.

Each server is a raw asyncio TCP server on an ephemeral port, run on its own event loop
in a background thread, so it keeps misbehaving whatever the client's loop is doing.
A *behaviour* is an async function given a `Peer` (one accepted connection); the
factories below build the usual ones. Import the fixtures into a test module (or a
conftest) with `from tests.hostile_servers import hostile, tls_ca, recording_proxy`.

Fixtures:
    hostile: `hostile(behaviour, tls=False) -> HostileServer`, started now, stopped at
        teardown. With `tls=True` it speaks TLS with a certificate for 127.0.0.1 and
        localhost issued by the `tls_ca` fixture's CA, serving the CA in the chain (a
        client that does not trust it sees a self-signed certificate in the chain).
    tls_ca: the test's own `trustme.CA`. `tls_client_context(tls_ca)` is an
        `ssl.SSLContext` trusting it (pass it as httpx's `verify=`); the default trust
        store does not, so a plain client meets a certificate failure.
    recording_proxy: a `HostileServer` posing as an HTTP forward proxy; it answers 502
        and records every connection in `.connections` (tests assert it stays empty).

Behaviours (each reads the request first unless said otherwise):
    answer(status, body, headers, reason): a complete response with Content-Length.
    raw(data): exactly `data` (status line with any reason phrase, headers, body), then close.
    drip_body(body, interval): headers, then the body one byte every `interval` s.
    drip_headers(interval): a status line, then one header line every `interval` s, forever.
    never_answer(): reads the request and says nothing until the client leaves.
    gzip_bomb(size, layers): `size` zero bytes, gzip-encoded `layers` times (1 or 2),
        generated on the fly as it is sent: 1 GiB is ~1 MB in one layer, a few kB in two.

`HostileServer.requests` holds the head of every request received (bytes up to the blank
line), `.connections` the number of connections accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import tempfile
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trustme

__all__ = [
    "Behaviour",
    "HostileServer",
    "Peer",
    "answer",
    "bomb_stream",
    "drip_body",
    "drip_headers",
    "gzip_bomb",
    "hostile",
    "never_answer",
    "raw",
    "recording_proxy",
    "tls_ca",
    "tls_client_context",
]


class Peer:
    """One accepted connection, as a behaviour sees it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: HostileServer
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._server = server

    async def read_request(self) -> bytes:
        """Read one request (head and Content-Length body); record its head; return the head."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        self._server.requests.append(head)
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                await self.reader.readexactly(int(value))
        return head

    async def send(self, data: bytes) -> None:
        """Write `data` and wait until the socket took it."""
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_close(self) -> None:
        """Return once the client has closed its end."""
        while await self.reader.read(2**16):
            pass


Behaviour = Callable[[Peer], Awaitable[None]]


class HostileServer:
    """A TCP server on 127.0.0.1 whose every connection runs `behaviour`."""

    def __init__(self, behaviour: Behaviour, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
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
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def base_url(self) -> str:
        """A `base_url` for `AsyncModelsLab` pointing here."""
        return self.url("/api")

    def start(self) -> HostileServer:
        """Start listening on an ephemeral port."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)

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

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def response_head(
    status: int = 200, headers: dict[str, str] | None = None, reason: str = "OK"
) -> bytes:
    """A status line and headers, ending in the blank line."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(
    status: int = 200,
    body: bytes = b'{"status": "success", "id": 1, "output": []}',
    headers: dict[str, str] | None = None,
    reason: str = "OK",
) -> Behaviour:
    """A complete response with a Content-Length, then the connection closes."""

    async def behave(peer: Peer) -> None:
        await peer.read_request()
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
        await peer.read_request()
        await peer.send(data)

    return behave


def drip_body(
    body: bytes = b'{"status": "success", "id": 1, "output": ["https://x/a.png"], "x": 1}',
    interval: float = 0.25,
    content_type: str = "application/json",
) -> Behaviour:
    """Headers at once, then `body` one byte every `interval` seconds."""

    async def behave(peer: Peer) -> None:
        await peer.read_request()
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
        await peer.read_request()
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
        await peer.read_request()
        await peer.wait_for_close()

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
        await peer.read_request()
        headers = {
            "Content-Type": content_type,
            "Content-Encoding": ", ".join(["gzip"] * layers),
            "Connection": "close",
        }
        await peer.send(response_head(status, headers))
        for chunk in bomb_stream(size, layers):
            await peer.send(chunk)

    return behave


def tls_client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client `ssl.SSLContext` that trusts `ca` (and nothing else)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def tls_ca() -> trustme.CA:
    """A certificate authority made for this test, trusted by nobody by default."""
    return trustme.CA()


@pytest.fixture
def hostile(tls_ca: trustme.CA) -> Iterator[Callable[..., HostileServer]]:
    """Start hostile servers: `hostile(behaviour, tls=False)`; all stop at teardown."""
    servers: list[HostileServer] = []

    def start(behaviour: Behaviour, *, tls: bool = False) -> HostileServer:
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf = tls_ca.issue_cert("127.0.0.1", "localhost")
            # The chain ends in the CA itself, as a self-signed setup serves it, so an
            # untrusting client says "self-signed certificate in certificate chain".
            chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder, "chain.pem")
                path.write_bytes(chain + tls_ca.cert_pem.bytes())
                with leaf.private_key_pem.tempfile() as key:
                    context.load_cert_chain(path, key)
        server = HostileServer(behaviour, ssl_context=context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def recording_proxy() -> Iterator[HostileServer]:
    """A forward proxy on 127.0.0.1 that records every connection and answers 502."""

    async def behave(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(response_head(502, {"Content-Length": "0", "Connection": "close"}))

    server = HostileServer(behave).start()
    yield server
    server.stop()
