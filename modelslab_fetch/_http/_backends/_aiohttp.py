"""The default HTTP backend, on aiohttp: the only module that imports aiohttp (or asyncio).

Imported on a client's first request, not with the package: a CLI start or a serverless
cold start that never sends (or sends through httpx) does not pay for aiohttp's import.
In `benchmarks/`, httpx's own transport cost 4-6x more client CPU per request and grew
with concurrency, httpx over aiohttp (httpx-aiohttp) still 3x more, while plain aiohttp
stayed flat and cheapest (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping

import aiohttp
import httpx

from ..._config import is_loopback
from ..._errors import BackendTimeout
from .._decoding import ACCEPT_ENCODING, BodyDecoder
from ._base import (
    MAX_RESPONSE_BYTES,
    RawResponse,
    bounded,
    connection_error,
    decoding_errors,
    describe,
)

__all__ = ["AiohttpBackend"]


class AiohttpBackend:
    """Sends through one `aiohttp.ClientSession`, created on first use in the running loop."""

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._timeout: tuple[httpx.Timeout, aiohttp.ClientTimeout] | None = None

    def __repr__(self) -> str:
        return f"AiohttpBackend(max_connections={self._max_connections})"

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST through aiohttp, mapping its exceptions onto the backend errors."""
        return await bounded(self._post(url, content, headers, timeout), timeout)

    async def _post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    # The client's one TLS context (verify=, cert=, SSL_CERT_FILE): the
                    # same certificates are trusted here as in downloads.
                    ssl=self._ssl_context if self._ssl_context is not None else True,
                ),
                # aiohttp's trust_env looks proxies up in a worker thread on every
                # request; _proxy_for does it once per host instead.
                trust_env=False,
                # Decoded by _read_capped with a bound: aiohttp would inflate each chunk
                # in one unbounded call (see _decoding).
                auto_decompress=False,
            )
        try:
            async with session.post(
                url,
                data=content,
                headers={**headers, "accept-encoding": ACCEPT_ENCODING},
                allow_redirects=False,
                timeout=self._timeout_for(timeout),
                proxy=self._proxy_for(url),
            ) as response:
                body = await _read_capped(response)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise BackendTimeout(describe(exc) or "timed out") from None
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from None
        return RawResponse(response.status, response.headers, body, url, response.reason or "")

    def _timeout_for(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        # A client sends every request with the same timeout: convert it once.
        if self._timeout is None or self._timeout[0] is not timeout:
            self._timeout = (timeout, _aiohttp_timeout(timeout))
        return self._timeout[1]

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for `url`: `proxy=`, else the environment's (HTTPS_PROXY, NO_PROXY...)."""
        origin = url[: url.find("/", url.find("//") + 2)]
        if origin not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname or ""
            proxy = self._proxy
            bypassed = False
            if proxy is None and self._trust_env:
                proxies = urllib.request.getproxies()
                proxy = proxies.get(parts.scheme) or proxies.get("all")
                bypassed = bool(urllib.request.proxy_bypass(host))
            # Plain http is allowed only to loopback on the grounds that nothing crosses
            # the network: so loopback never goes through a proxy, whatever is configured.
            self._proxies[origin] = None if bypassed or is_loopback(host) else proxy
        return self._proxies[origin]

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if length is not None and length <= MAX_RESPONSE_BYTES and encoding == "identity":
        return await response.read()  # the common case: one read of a known, small body
    # Compressed (Content-Length counts the compressed bytes) or of unknown length: count
    # what decodes, so a gzip bomb stops at the cap too.
    body = bytearray()
    with decoding_errors(response.status):
        decoder = BodyDecoder(encoding, MAX_RESPONSE_BYTES)
        async for chunk in response.content.iter_chunked(2**16):
            for piece in decoder.feed(chunk):
                body += piece
        for piece in decoder.finish():
            body += piece
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
