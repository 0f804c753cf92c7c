"""The HTTP backend contract: what a backend returns and raises, and the bounds every one keeps.

A backend turns its library's failures into the signals of `_errors`, which only the
transport turns into the errors users see.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from typing import NamedTuple, TypeVar

import anyio
import httpx

from ..._errors import (
    BackendCertificateError,
    BackendConnectionError,
    BackendResponseTooLarge,
    BackendTimeout,
    BackendUnknownHost,
    DecodedTooLarge,
    DecodingError,
)
from .._decoding import BodyDecoder, read_decoded

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Backend",
    "RawResponse",
    "connection_error",
    "deadline_exceeded",
    "describe",
    "overall_deadline",
    "read_body",
]

_T = TypeVar("_T")

MAX_RESPONSE_BYTES = 10 * 2**20
"""The most of a response body read (a fetch answer is a few kB)."""

# Far longer than the excerpt shown: a key cut in two here lies beyond anything shown.
_HEAD_BYTES = 4096


class RawResponse(NamedTuple):
    """What came back: status, headers (case-insensitive) and the whole body."""

    # A NamedTuple: made twice per request, where a frozen dataclass cost five times more.

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    reason: str = ""

    def to_httpx(self, content: bytes | None = None) -> httpx.Response:
        """It as an `httpx.Response` whose request has no body (so no key), framing dropped."""
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


class Backend:
    """Sends one POST and returns the whole response, or raises a backend signal."""

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST `content` to `url`, never following redirects, within `overall_deadline`."""
        return await _bounded(self._send(url, content, headers, timeout), timeout)

    async def _send(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections this backend owns."""
        raise NotImplementedError


async def read_body(status_code: int, encoding: str | None, chunks: AsyncIterator[bytes]) -> bytes:
    """The body of raw `chunks` decoded, at most `MAX_RESPONSE_BYTES` of it."""
    try:
        return await read_decoded(chunks, BodyDecoder(encoding, MAX_RESPONSE_BYTES))
    except DecodedTooLarge as exc:
        raise BackendResponseTooLarge(status_code, exc.head[:_HEAD_BYTES]) from None
    except DecodingError as exc:
        raise BackendConnectionError(
            f"DecodingError: {exc}", "the answer's content encoding was broken"
        ) from None


def overall_deadline(timeout: httpx.Timeout) -> float | None:
    """The most one attempt may take, connect to last byte: the largest finite of `timeout`.

    The libraries' limits are per socket operation: a byte a second never trips them.
    """
    values = [
        value
        for value in (timeout.connect, timeout.read, timeout.write, timeout.pool)
        if value is not None
    ]
    return max(values) if values else None


async def _bounded(exchange: Awaitable[_T], timeout: httpx.Timeout) -> _T:
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
    raise deadline_exceeded(deadline)


def deadline_exceeded(deadline: float | None) -> BackendTimeout:
    """The `BackendTimeout` of an exchange that outlived `overall_deadline`."""
    return BackendTimeout(
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
    # aiohttp's connector errors carry the resolver's (negative) errno on a plain OSError.
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
    """`error` as one line: its type, and its text if it has any."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
