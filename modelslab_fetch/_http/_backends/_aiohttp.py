"""The default HTTP backend, on aiohttp: the only module that imports aiohttp (or asyncio).

Imported on a client's first request, not with the package: a CLI start or a serverless
cold start that never sends (or sends through httpx) does not pay for aiohttp's import.
In `benchmarks/`, httpx's own transport cost 4-6x more client CPU per request and grew
with concurrency, httpx over aiohttp (httpx-aiohttp) still 3x more, while plain aiohttp
stayed flat and cheapest (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Mapping

import aiohttp
import httpx

from ..._closing import STEP_DEADLINES, step_deadline
from ..._errors import BackendTimeout
from .._decoding import ACCEPT_ENCODING
from ._contract import (
    MAX_RESPONSE_BYTES,
    Backend,
    RawResponse,
    connection_error,
    deadline_exceeded,
    describe,
    overall_deadline,
    read_body,
)

__all__ = ["AiohttpBackend"]


class AiohttpBackend(Backend):
    """Sends through one `aiohttp.ClientSession`, created on first use in the running loop.

    Every request goes through `proxy` (the transport decided it, see `_proxy`), or none.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None
        self._timeout: tuple[httpx.Timeout, aiohttp.ClientTimeout, float | None] | None = None

    def __repr__(self) -> str:
        return f"AiohttpBackend(max_connections={self._max_connections})"

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> RawResponse:
        """POST `content` to `url`, never following redirects, within `overall_deadline`.

        The deadline covers the exchange from waiting for a connection to the body's last
        byte: a `step_deadline` (an entry in a heap of our own) where asyncio counts
        cancellations, else aiohttp's own `total` timeout, an asyncio timer made and
        cancelled on every request (a twentieth of a request's whole cost).
        """
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
                # request; the transport decided the proxy once instead.
                trust_env=False,
                # Decoded by _read_capped with a bound: aiohttp would inflate each chunk
                # in one unbounded call (see _decoding).
                auto_decompress=False,
            )
        client_timeout, deadline = self._timeout_for(timeout)
        try:
            with step_deadline(deadline) as step:
                async with session.post(
                    url,
                    data=content,
                    headers={**headers, "accept-encoding": ACCEPT_ENCODING},
                    allow_redirects=False,
                    timeout=client_timeout,
                    proxy=self._proxy,
                ) as response:
                    body = await _read_capped(response)
        except aiohttp.ServerTimeoutError as exc:  # connect or one socket read: said which
            raise BackendTimeout(describe(exc) or "timed out") from None
        except asyncio.TimeoutError:  # aiohttp's `total`: the deadline of the exchange
            raise deadline_exceeded(overall_deadline(timeout)) from None
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from None
        if step.expired:
            raise deadline_exceeded(overall_deadline(timeout))
        return RawResponse(response.status, response.headers, body, url, response.reason or "")

    def _timeout_for(self, timeout: httpx.Timeout) -> tuple[aiohttp.ClientTimeout, float | None]:
        # aiohttp's timeouts, and the exchange's deadline when a `step_deadline` keeps it
        # (else aiohttp's `total` does). A client sends every request with the same
        # timeout: converted once.
        if self._timeout is None or self._timeout[0] is not timeout:
            ours = overall_deadline(timeout) if STEP_DEADLINES else None
            self._timeout = (timeout, _aiohttp_timeout(timeout, total=ours is None), ours)
        return self._timeout[1], self._timeout[2]

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
    return await read_body(response.status, encoding, response.content.iter_chunked(2**16))


def _aiohttp_timeout(timeout: httpx.Timeout, *, total: bool = True) -> aiohttp.ClientTimeout:
    # httpx's read/write/pool limits have no exact aiohttp match; map each to the
    # closest: connect -> establishing the socket, read -> each socket read, pool ->
    # waiting for a connection (aiohttp's `connect` covers pool wait plus connect).
    # `total` is the deadline of the whole exchange (see `overall_deadline`); False: a
    # `step_deadline` keeps it. A limit no shorter than it can never fire first, and
    # costs a timer per request (`connect`) or per chunk read (`sock_read`): left out.
    deadline = overall_deadline(timeout)
    pool_and_connect = None
    if timeout.pool is not None or timeout.connect is not None:
        pool_and_connect = (timeout.pool or 0.0) + (timeout.connect or 0.0)
    return aiohttp.ClientTimeout(
        total=deadline if total else None,
        connect=_shorter_than(pool_and_connect, deadline),
        sock_connect=_shorter_than(timeout.connect, deadline),
        sock_read=_shorter_than(timeout.read, deadline),
        # aiohttp rounds deadlines of 5 s or more up to a whole second; ours are exact.
        ceil_threshold=math.inf,
    )


def _shorter_than(limit: float | None, total: float | None) -> float | None:
    """`limit`, or None when `total` always ends the exchange first."""
    if limit is None or total is None or limit < total:
        return limit
    return None
