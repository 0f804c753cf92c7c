"""The HTTP backend contract (what a backend returns and raises) and the httpx backend.

A backend is the one replaceable piece that carries a POST to ModelsLab and back. Two
exist: `HttpxBackend` here, which sends through an `httpx.AsyncClient` (yours, if you
pass `http_client=`), and `AiohttpBackend` (`_aiohttp_backend.py`), the default, imported
only when first used. httpx stays the interface you configure and meet in errors; when
respx (or anything else) has patched httpx or httpcore, the default falls back to httpx
so that your mocks see every request.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from collections.abc import AsyncGenerator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
import httpx
import sniffio

from .._decoding import (
    ACCEPT_ENCODING,
    DecodedTooLarge,
    DecodingError,
    closing_chunks,
    decoded_chunks,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Backend",
    "BackendCertificateError",
    "BackendConnectionError",
    "BackendResponseTooLarge",
    "BackendTimeout",
    "BackendUnknownHost",
    "HttpxBackend",
    "RawResponse",
    "bounded",
    "connection_error",
    "decoding_errors",
    "describe",
    "httpx_is_patched",
    "overall_deadline",
]

_T = TypeVar("_T")

MAX_RESPONSE_BYTES = 10 * 2**20
"""The most of a response body read: a fetch answer is a few kB, so 10 MB is an attack or
a misrouted download, and reading on would only exhaust memory."""

# The start of an oversize body kept for the error's excerpt: far longer than the excerpt
# itself, so a key cut in two at this boundary lies beyond anything shown.
_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What came back: status, headers (case-insensitive) and the whole body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    reason: str = ""

    def to_httpx(self, content: bytes | None = None) -> httpx.Response:
        """Return it as an `httpx.Response` whose request has no body (so no key).

        `content` replaces the body (e.g. redacted); headers that described the original
        framing are dropped, as the body is already decoded.
        """
        headers = [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() not in {"content-encoding", "content-length", "transfer-encoding"}
        ]
        return httpx.Response(
            self.status_code,
            headers=headers,
            content=self.content if content is None else content,
            request=httpx.Request("POST", self.url),
            extensions={"reason_phrase": self.reason.encode()} if self.reason else {},
        )


class BackendTimeout(Exception):
    """A backend's request timed out; `detail` says how."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BackendConnectionError(Exception):
    """A backend could not reach the server or lost the connection; `detail` says how.

    `cause` says it in a few words ("connection refused"), for `APIConnectionError.cause`.
    """

    def __init__(self, detail: str, cause: str = "the connection failed") -> None:
        self.detail = detail
        self.cause = cause
        super().__init__(detail)


class BackendCertificateError(BackendConnectionError):
    """The server's TLS certificate failed verification; `detail` carries the complaint.

    Retrying cannot help: the same certificate comes back until someone fixes it (or the
    `verify` setting of your `http_client`).
    """


class BackendUnknownHost(BackendConnectionError):
    """DNS says the host name does not exist (not a temporary resolver failure)."""


class BackendResponseTooLarge(Exception):
    """A response body exceeded `MAX_RESPONSE_BYTES`; `head` is its start."""

    def __init__(self, status_code: int, head: bytes) -> None:
        self.status_code = status_code
        self.head = head
        super().__init__(f"response larger than {MAX_RESPONSE_BYTES} bytes")


class Backend(Protocol):
    """Sends one POST and returns the whole response, or raises a `Backend*` error."""

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST `content` to `url`; never follow redirects."""
        ...

    async def aclose(self) -> None:
        """Release connections this backend owns."""
        ...


class HttpxBackend:
    """Sends through an `httpx.AsyncClient`, redirects off whatever the client says."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self._client = client
        self._owned = owned

    def __repr__(self) -> str:
        return "HttpxBackend()"

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST through httpx, mapping its exceptions onto the backend errors."""
        return await bounded(self._post(url, content, headers, timeout), timeout)

    async def _post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        try:
            request = self._client.build_request(
                "POST",
                url,
                content=content,
                headers={**headers, "accept-encoding": ACCEPT_ENCODING},
                timeout=timeout,
            )
            if sniffio.current_async_library() == "trio":
                # Under trio only (see _RequestBody); elsewhere the plain bytes, which
                # every transport takes (httpx-aiohttp's waits forever on a stream).
                request.stream = _RequestBody(content)
            response = await self._client.send(request, stream=True, follow_redirects=False)
            async with _closing(response):
                # Raw bytes, decoded here with a bound: httpx would inflate each chunk
                # in one unbounded call (see _decoding).
                body = bytearray()
                with decoding_errors(response.status_code):
                    decoder, raw = decoded_chunks(response, MAX_RESPONSE_BYTES)
                    # Closed even when the decoder gives up half way: an iterator left
                    # open is a resource warning under trio.
                    async with closing_chunks(raw) as chunks:
                        async for chunk in chunks:
                            for piece in decoder.feed(chunk):
                                body += piece
                    for piece in decoder.finish():
                        body += piece
        except httpx.TimeoutException as exc:
            raise BackendTimeout(describe(exc)) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            # Connection trouble, bad URLs: all "could not talk to the server". Never
            # chained: httpx's errors hold the request body.
            raise connection_error(exc) from None
        except RuntimeError as exc:  # your http_client was closed under us
            raise BackendConnectionError(describe(exc)) from None
        return RawResponse(
            response.status_code,
            response.headers,
            bytes(body),
            str(response.url),
            response.reason_phrase,
        )

    async def aclose(self) -> None:
        """Close the client if it was created here; a client you passed stays open."""
        if self._owned:
            await self._client.aclose()


@contextmanager
def decoding_errors(status_code: int) -> Iterator[None]:
    """Turn the decoder's errors into the backend's: too large, or a broken body."""
    try:
        yield
    except DecodedTooLarge as exc:
        raise BackendResponseTooLarge(status_code, exc.head[:_HEAD_BYTES]) from None
    except DecodingError as exc:
        raise BackendConnectionError(
            f"DecodingError: {exc}", "the answer's content encoding was broken"
        ) from None


@asynccontextmanager
async def _closing(response: httpx.Response) -> AsyncGenerator[httpx.Response, None]:
    try:
        yield response
    finally:
        await response.aclose()


class _RequestBody(httpx.AsyncByteStream):
    """A request body of one chunk, iterated without an async generator.

    For bytes, httpx iterates an async generator of its own; a request cancelled while it
    is sent (a batch left early) leaves that generator for the garbage collector, which
    trio reports as a resource warning. This iterator needs no closing.
    """

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __repr__(self) -> str:
        return "_RequestBody(<redacted>)"

    def __aiter__(self) -> _RequestBody:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


def overall_deadline(timeout: httpx.Timeout) -> float | None:
    """The most one attempt may take, connect to last byte: the largest finite of `timeout`.

    httpx's and aiohttp's limits apply to each socket operation, so a server that sends
    one byte a second never trips them; this bound covers the exchange as a whole.
    `httpx.Timeout(None)` has no finite value and means no bound.
    """
    values = [
        value
        for value in (timeout.connect, timeout.read, timeout.write, timeout.pool)
        if value is not None
    ]
    return max(values) if values else None


async def bounded(exchange: Awaitable[_T], timeout: httpx.Timeout) -> _T:
    """Await `exchange`, raising `BackendTimeout` if it outlives `overall_deadline(timeout)`."""
    deadline = overall_deadline(timeout)
    scope = anyio.move_on_after(deadline if deadline is not None else float("inf"))
    try:
        with scope:
            return await exchange
    except BackendConnectionError:
        # Cancelled mid-read, a client library may report a broken connection instead.
        if not scope.cancel_called:
            raise
    raise BackendTimeout(
        f"the whole exchange exceeded {deadline:g} s, the largest value of `timeout`: the "
        "server answered too slowly or not at all; raise `timeout` if it is only slow"
    )


def connection_error(error: BaseException) -> BackendConnectionError:
    """The `BackendConnectionError` (or its certificate / unknown host kind) for `error`."""
    for link in _chain(error):
        # aiohttp's certificate error is itself an SSLCertVerificationError (with none of
        # its fields set): the complaint is on the one it wraps.
        complaint = _certificate_complaint(getattr(link, "certificate_error", link))
        if complaint is not None:
            return BackendCertificateError(
                f"the server's TLS certificate failed verification: {complaint}; if the "
                "server is yours, make your http_client trust its CA (httpx's verify=)",
                complaint,
            )
        if _is_no_such_name(link):
            return BackendUnknownHost(
                f"the host name does not exist (DNS): {describe(error)}; check the URL",
                "the host name does not exist",
            )
    return BackendConnectionError(describe(error), _cause_of(error))


_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH}


def _cause_of(error: BaseException) -> str:
    """What failed, in a few words, from the types (not the text) of `error`'s chain."""
    aiohttp = sys.modules.get("aiohttp")  # its errors exist only once it is imported
    for link in _chain(error):
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            return "the connection was reset"
        if isinstance(link, OSError) and link.errno in _UNREACHABLE:
            return "network unreachable"
        if isinstance(link, httpx.RemoteProtocolError) or (
            aiohttp is not None
            and isinstance(link, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError)
        ):
            return "the server closed the connection"  # before, or part way through, its answer
    return "the connection failed"


def _certificate_complaint(error: object) -> str | None:
    if not isinstance(error, ssl.SSLCertVerificationError):
        return None
    return getattr(error, "verify_message", None) or str(error)


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _is_no_such_name(error: BaseException) -> bool:
    if isinstance(error, socket.gaierror):
        return error.errno in _NO_SUCH_NAME
    # aiohttp's connector errors carry the resolver's errno on a plain OSError (the EAI_*
    # numbers are negative, so they never clash with an ordinary errno).
    os_error = getattr(error, "os_error", None)
    return isinstance(os_error, OSError) and os_error.errno in _NO_SUCH_NAME


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def httpx_is_patched() -> bool:
    """Whether httpx's or httpcore's request path is patched, as respx's mocks do."""
    import httpcore  # noqa: PLC0415 - asked once per client, on its first request

    pool = httpcore.AsyncConnectionPool.handle_async_request.__module__
    client = httpx.AsyncClient._transport_for_url.__module__
    return not (pool.startswith("httpcore") and client.startswith("httpx"))
