"""The httpx backend: POSTs through an `httpx.AsyncClient`, yours (`http_client=`) or one made here.

The default backend falls back to it when respx (or anything) patched httpx, so mocks see
every request.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import sniffio

from ..._errors import BackendConnectionError, BackendTimeout
from .._decoding import ACCEPT_ENCODING, OneChunk, raw_chunks
from ._contract import Backend, RawResponse, connection_error, describe, read_body

__all__ = ["HttpxBackend", "httpx_is_patched"]


class HttpxBackend(Backend):
    """Sends through an `httpx.AsyncClient`, redirects off whatever the client says."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self._client = client
        self._owned = owned

    def __repr__(self) -> str:
        return "HttpxBackend()"

    async def _send(
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
                # Under trio only (see OneChunk); elsewhere the plain bytes, which every
                # transport takes (httpx-aiohttp's waits forever on a stream).
                request.stream = OneChunk(content)
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                # Raw bytes, decoded with a bound: httpx would inflate each chunk in one
                # unbounded call (see _decoding).
                body = await read_body(response.status_code, *raw_chunks(response))
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise BackendTimeout(describe(exc)) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            # Connection trouble, bad URLs: all "could not talk to the server". Never
            # chained: httpx's errors hold the request body.
            raise connection_error(exc) from None
        except RuntimeError as exc:  # your http_client was closed under us
            raise BackendConnectionError(describe(exc)) from None
        return RawResponse(
            response.status_code, response.headers, body, str(response.url), response.reason_phrase
        )

    async def aclose(self) -> None:
        """Close the client if it was created here; a client you passed stays open."""
        if self._owned:
            await self._client.aclose()


def httpx_is_patched() -> bool:
    """Whether httpx's or httpcore's request path is patched, as respx's mocks do."""
    import httpcore  # noqa: PLC0415 - asked once per client, on its first request

    pool = httpcore.AsyncConnectionPool.handle_async_request.__module__
    client = httpx.AsyncClient._transport_for_url.__module__
    return not (pool.startswith("httpcore") and client.startswith("httpx"))
