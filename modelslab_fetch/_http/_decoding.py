"""Undoing `Content-Encoding` a slice at a time, so a body's decoded size is capped as it grows.

aiohttp and httpx inflate each chunk in one unbounded call (1.8 kB of `gzip, gzip` can
become 1 GiB), so the backends and the downloader read raw bytes and decode them here.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx

from .._errors import DecodedTooLarge, DecodingError

__all__ = ["ACCEPT_ENCODING", "BodyDecoder", "OneChunk", "raw_chunks", "read_decoded"]

ACCEPT_ENCODING = "gzip, deflate"
"""What we ask servers for: the encodings the standard library decodes with a bound."""

# The most any layer hands out per call: a bomb's expansion never sits in memory.
_SLICE = 2**16


class _Layer:
    """Undoes one gzip or deflate layer, never producing more than asked per call."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._inflater: zlib._Decompress | None = None  # made once the wrapping is known
        self._fed = False
        self._pending = b""  # input the inflater has not taken yet

    def feed(self, data: bytes) -> None:
        """Queue `data` (the encoded bytes of this layer) for decoding."""
        self._pending += data
        self._fed = self._fed or bool(data)

    def pull(self) -> bytes:
        """Return up to `_SLICE` decoded bytes, or b"" when the queued input is used up."""
        while self._pending:
            if self._inflater is None:
                if self._encoding == "deflate" and len(self._pending) < 2:
                    return b""  # wait for the two bytes that tell zlib from raw deflate
                self._inflater = zlib.decompressobj(self._wbits(self._pending))
            elif self._inflater.eof:
                if not self._another_member():
                    self._pending = b""
                    return b""
                continue
            data, self._pending = self._pending, b""
            try:
                out = self._inflater.decompress(data, _SLICE)
            except zlib.error as exc:
                raise DecodingError(f"body is not valid {self._encoding}: {exc}") from None
            self._pending = self._inflater.unconsumed_tail or self._inflater.unused_data
            if out:
                return out
        return b""

    def _wbits(self, start: bytes) -> int:
        if self._encoding == "gzip":
            return 16 + zlib.MAX_WBITS
        # RFC 9110's deflate is zlib-wrapped, but many servers send raw deflate: a zlib
        # header is a deflate method byte whose 16-bit header is a multiple of 31.
        zlib_wrapped = start[0] & 0x0F == 8 and (start[0] << 8 | start[1]) % 31 == 0
        return zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS

    def _another_member(self) -> bool:
        # gzip allows several members back to back; anything after a deflate stream, or
        # zero padding after a gzip member (some servers add it), is ignored.
        if self._encoding != "gzip" or not self._pending.strip(b"\x00"):
            return False
        self._inflater = None
        return True

    def finish(self) -> None:
        """Raise `DecodingError` if the stream stopped before its end."""
        if self._fed and (self._inflater is None or not self._inflater.eof):
            raise DecodingError(f"body ends inside its {self._encoding} stream")


class BodyDecoder:
    """Decodes a body as `content_encoding` says; `DecodedTooLarge` once past `limit` bytes."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        self._limit = limit
        self._total = 0
        self._head = bytearray()
        self._layers = _layers_for(content_encoding or "")

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Yield the decoded bytes `raw` gives, a slice at a time."""
        if not self._layers:
            yield from self._count(raw)
            return
        # The header lists encodings in the order applied: the outermost is last.
        self._layers[0].feed(raw)
        yield from self._drain(0)

    def finish(self) -> Iterator[bytes]:
        """Yield what is left once the body ended; raise `DecodingError` if it was cut short."""
        for index, layer in enumerate(self._layers):
            yield from self._drain(index)
            layer.finish()

    def _drain(self, index: int) -> Iterator[bytes]:
        layer = self._layers[index]
        while out := layer.pull():
            if index + 1 == len(self._layers):
                yield from self._count(out)
            else:
                self._layers[index + 1].feed(out)
                yield from self._drain(index + 1)

    def _count(self, out: bytes) -> Iterator[bytes]:
        self._total += len(out)
        if len(self._head) < 4096:
            self._head += out[: 4096 - len(self._head)]
        if self._total > self._limit:
            raise DecodedTooLarge(self._limit, bytes(self._head))
        yield out


def _layers_for(content_encoding: str) -> list[_Layer]:
    names = [name.strip().lower() for name in content_encoding.split(",")]
    layers = []
    for name in reversed(names):
        if name in ("", "identity"):
            continue
        if name in ("gzip", "x-gzip"):
            layers.append(_Layer("gzip"))
        elif name == "deflate":
            layers.append(_Layer("deflate"))
        elif name in ("br", "zstd"):
            raise DecodingError(
                f"the server sent a {name}-encoded body although only {ACCEPT_ENCODING!r} "
                "was accepted; it cannot be decoded with a size bound here"
            )
        else:
            raise DecodingError(f"unknown Content-Encoding {name!r}; cannot decode the body")
    return layers


async def read_decoded(
    chunks: AsyncIterator[bytes],
    decoder: BodyDecoder,
    write: Callable[[bytes], Awaitable[object]] | None = None,
) -> bytes:
    """Feed the raw `chunks` through `decoder`: the decoded body, or each piece to `write`.

    The chunks are closed even when the decoder gives up (trio warns of open generators).
    """
    body = bytearray()

    async def take(pieces: Iterator[bytes]) -> None:
        for piece in pieces:
            if write is None:
                body.extend(piece)
            else:
                await write(piece)

    try:
        async for chunk in chunks:
            await take(decoder.feed(chunk))
        await take(decoder.finish())
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return bytes(body)


def raw_chunks(response: httpx.Response) -> tuple[str | None, AsyncIterator[bytes]]:
    """The `Content-Encoding` and the raw chunks of `response`'s body.

    A body already in memory (`httpx.MockTransport`) is decoded already: one chunk.
    """
    if response.is_stream_consumed:
        return None, OneChunk(response.content)
    return response.headers.get("content-encoding"), response.aiter_raw()


class OneChunk(httpx.AsyncByteStream):
    """One chunk as an async iterator that needs no closing; its repr hides the bytes (a key)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __repr__(self) -> str:
        return "OneChunk(<hidden>)"

    def __aiter__(self) -> OneChunk:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data
