"""The HTTP backends: the one replaceable piece that carries a POST to ModelsLab and back.

Two backends exist. `HttpxBackend` sends through an `httpx.AsyncClient` (yours, if you
pass `http_client=`). `AiohttpBackend` is the default: in `benchmarks/` httpx's own
transport cost 4-6x more client CPU per request and grew with concurrency, httpx over
aiohttp (httpx-aiohttp) still 3x more, while plain aiohttp stayed flat and cheapest (see
docs/performance.md). httpx stays the interface you configure and meet in errors; when
respx (or anything else) has patched httpx or httpcore, the default falls back to httpx
so that your mocks see every request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpcore
import httpx

from ._config import is_loopback

__all__ = [
    "MAX_RESPONSE_BYTES",
    "AiohttpBackend",
    "Backend",
    "HttpxBackend",
    "RawResponse",
    "httpx_is_patched",
]

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
    """A backend could not reach the server or lost the connection; `detail` says how."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BackendCertificateError(BackendConnectionError):
    """The server's TLS certificate failed verification; `detail` carries the complaint."""


class BackendUnknownHost(BackendConnectionError):
    """DNS says the host does not exist (not a temporary failure)."""


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
        try:
            async with self._client.stream(
                "POST",
                url,
                content=content,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise BackendResponseTooLarge(
                            response.status_code, bytes(body[:_HEAD_BYTES])
                        )
        except httpx.TimeoutException as exc:
            raise BackendTimeout(_describe(exc)) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            # Connection trouble, undecodable bodies (bad gzip), bad URLs: all "could not
            # talk to the server". Never chained: httpx's errors hold the request body.
            raise BackendConnectionError(_describe(exc)) from None
        except RuntimeError as exc:  # your http_client was closed under us
            raise BackendConnectionError(_describe(exc)) from None
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


class AiohttpBackend:
    """Sends through one `aiohttp.ClientSession`, created on first use in the running loop."""

    def __init__(self, *, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._timeout: tuple[httpx.Timeout, aiohttp.ClientTimeout] | None = None

    def __repr__(self) -> str:
        return f"AiohttpBackend(max_connections={self._max_connections})"

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST through aiohttp, mapping its exceptions onto the backend errors."""
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # aiohttp's trust_env looks proxies up in a worker thread on every
                # request; _proxy_for does it once per host instead.
                trust_env=False,
            )
        try:
            async with session.post(
                url,
                data=content,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout_for(timeout),
                proxy=self._proxy_for(url),
            ) as response:
                body = await _read_capped(response)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise BackendTimeout(_describe(exc) or "timed out") from None
        except aiohttp.ClientError as exc:
            raise BackendConnectionError(_describe(exc)) from None
        return RawResponse(response.status, response.headers, body, url, response.reason or "")

    def _timeout_for(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        # A client sends every request with the same timeout: convert it once.
        if self._timeout is None or self._timeout[0] is not timeout:
            self._timeout = (timeout, _aiohttp_timeout(timeout))
        return self._timeout[1]

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for `url` (HTTPS_PROXY, NO_PROXY...), as httpx."""
        origin = url[: url.find("/", url.find("//") + 2)]
        if origin not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            proxies = urllib.request.getproxies()
            proxy = proxies.get(parts.scheme) or proxies.get("all")
            host = parts.hostname or ""
            # Plain http is allowed only to loopback on the grounds that nothing crosses
            # the network: so loopback never goes through a proxy, whatever the env says.
            bypass = proxy is None or is_loopback(host) or urllib.request.proxy_bypass(host)
            self._proxies[origin] = None if bypass else proxy
        return self._proxies[origin]

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    if length is not None and length <= MAX_RESPONSE_BYTES and not encoded:
        return await response.read()  # the common case: one read of a known, small body
    # Compressed (Content-Length counts the compressed bytes) or of unknown length: count
    # what decompresses, so a gzip bomb stops at the cap too.
    body = bytearray()
    async for chunk in response.content.iter_chunked(2**16):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise BackendResponseTooLarge(response.status, bytes(body[:_HEAD_BYTES]))
    return bytes(body)


def _aiohttp_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    # httpx's read/write/pool limits have no exact aiohttp twin; map each to the
    # closest: connect -> establishing the socket, read -> each socket read, pool ->
    # waiting for a connection (aiohttp's `connect` covers pool wait plus connect).
    pool_and_connect = None
    if timeout.pool is not None or timeout.connect is not None:
        pool_and_connect = (timeout.pool or 0.0) + (timeout.connect or 0.0)
    return aiohttp.ClientTimeout(
        total=None,
        connect=pool_and_connect,
        sock_connect=timeout.connect,
        sock_read=timeout.read,
    )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def httpx_is_patched() -> bool:
    """Whether httpx's or httpcore's request path is patched, as respx's mocks do."""
    pool = httpcore.AsyncConnectionPool.handle_async_request.__module__
    client = httpx.AsyncClient._transport_for_url.__module__
    return not (pool.startswith("httpcore") and client.startswith("httpx"))
