"""Layer 1: send one JSON POST to ModelsLab, map failures to our errors, retry transient ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from ._clock import Clock
from ._config import ClientConfig
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ModelsLabError,
    RateLimitError,
)
from ._http_errors import RETRYABLE_STATUS_CODES, decode_response, is_html
from ._traffic import TrafficControl
from ._version import __version__

__all__ = ["MAX_RETRY_AFTER", "Transport", "is_transient"]

logger = logging.getLogger("modelslab_fetch")

MAX_RETRY_AFTER = 60.0
"""A `Retry-After` longer than this is not slept through: the error is raised at once."""

RATE_LIMIT_PAUSE = 1.0
"""How long a 429 without `Retry-After` pauses the client's traffic."""

REDACTED = b"***"

# `content` below is already decoded and maybe redacted: headers describing the original
# framing would make httpx decode it twice or distrust its length.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def is_transient(error: BaseException) -> bool:
    """Whether `error` is worth trying again: network trouble, overload, or rate limiting.

    A `Retry-After` longer than `MAX_RETRY_AFTER` is not: the caller hears about it now
    rather than a minute later.
    """
    if isinstance(error, APIConnectionError):
        return True
    if not isinstance(error, APIStatusError):
        return False
    if error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER:
        return False
    if error.status_code in RETRYABLE_STATUS_CODES:
        return True
    return error.status_code >= 500 and is_html(error.response, error.response.content)


class _wait_retry_after_or_backoff(wait_base):
    """Wait what the server asked for (`Retry-After`), else exponential backoff with jitter."""

    def __init__(self) -> None:
        self._backoff = wait_exponential(multiplier=0.5, max=8.0) + wait_random(0, 0.5)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = None if outcome is None else outcome.exception()
        if isinstance(error, RateLimitError):
            return 0.0  # the client-wide pause (TrafficControl) does the waiting
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, float):
            return retry_after
        return float(self._backoff(retry_state))


class Transport:
    """Sends JSON POSTs to ModelsLab with the API key added to the body.

    The only place that touches HTTP: it refuses redirects (the body holds the key),
    redacts the key from anything the server echoes, maps HTTP and network failures onto
    the `ModelsLabError` hierarchy, and retries transient failures with tenacity.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Clock,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._owns_http_client = http_client is None
        self._http = http_client if http_client is not None else self._default_http_client()
        self._traffic = TrafficControl(
            max_concurrency=config.max_concurrency,
            max_rate=config.max_requests_per_second,
            clock=clock,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"Transport(base_url={self._config.base_url!r})"

    def _default_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._config.timeout, follow_redirects=False)

    @property
    def max_concurrency(self) -> int:
        """The most requests this transport has in flight at once."""
        return self._config.max_concurrency

    @property
    def in_flight(self) -> int:
        """HTTP requests of this client in flight right now."""
        return self._traffic.in_flight

    @property
    def closed(self) -> bool:
        """Whether `aclose()` has been called."""
        return self._closed

    async def aclose(self) -> None:
        """Close the HTTP client if this transport created it; a client you passed stays open."""
        self._closed = True
        if self._owns_http_client:
            await self._http.aclose()

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        request_id: str | None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """POST `body` plus the key to `base_url + path`; return the JSON object answered.

        Raises a `ModelsLabError` subclass. Transient failures are retried first, up to
        `max_retries` times, unless `retry` is false: a caller with a schedule and a
        deadline of its own (polling) retries on that schedule instead.
        """
        if self._closed:
            raise ClientClosedError(
                "this client is closed; create a new one", request_id=request_id
            )
        url = self._config.base_url + path
        payload = {**body, "key": self._config.api_key.get_secret_value()}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._config.max_retries + 1 if retry else 1),
            wait=_wait_retry_after_or_backoff(),
            retry=retry_if_exception(is_transient),
            sleep=self._clock.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post_once(url, payload, request_id=request_id)
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    async def _post_once(
        self, url: str, payload: dict[str, Any], *, request_id: str | None
    ) -> dict[str, Any]:
        failure: APIConnectionError
        try:
            async with self._traffic:
                response = await self._http.post(
                    url,
                    json=payload,
                    headers={"user-agent": f"modelslab-fetch/{__version__}"},
                    timeout=self._config.timeout,
                    follow_redirects=False,
                )
        except httpx.TimeoutException as exc:
            failure = APITimeoutError(
                f"timed out talking to {url} ({self._describe(exc)})", request_id=request_id
            )
        except httpx.TransportError as exc:
            failure = APIConnectionError(
                f"could not talk to {url} ({self._describe(exc)})", request_id=request_id
            )
        else:
            return self._decode(response, request_id=request_id)
        # Raised outside the handler on purpose: httpx's exception holds the request, and
        # the request holds the key in its body, so it must not ride along as __context__.
        raise failure

    def _decode(self, response: httpx.Response, *, request_id: str | None) -> dict[str, Any]:
        logger.debug(
            "POST %s -> HTTP %s (request %s)", response.url, response.status_code, request_id
        )
        content = self._redact(response.content)
        decoded = decode_response(
            _without_request_body(response, content),
            content,
            request_id=request_id,
            now=time.time(),
        )
        if isinstance(decoded, RateLimitError):
            self._pause_for(decoded)
        if isinstance(decoded, ModelsLabError):
            raise decoded
        return decoded

    def _pause_for(self, error: RateLimitError) -> None:
        # One 429 pauses the whole client, so the other requests in flight do not each
        # run into the limit and back off on their own.
        pause = RATE_LIMIT_PAUSE if error.retry_after is None else error.retry_after
        if pause <= MAX_RETRY_AFTER and self._traffic.pause(pause):
            logger.warning("HTTP 429: pausing all requests of this client for %.2f s", pause)

    def _describe(self, error: Exception) -> str:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return text.replace(self._config.api_key.get_secret_value(), REDACTED.decode())

    def _redact(self, content: bytes) -> bytes:
        # A misbehaving server or proxy may echo the request body back: the key must not
        # reach results, errors or logs through that door.
        key = self._config.api_key.get_secret_value().encode()
        return content.replace(key, REDACTED) if key in content else content


def _without_request_body(response: httpx.Response, content: bytes) -> httpx.Response:
    """A copy of `response` safe to hand to users: its request has no body, so no key."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _BODY_FRAMING_HEADERS
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=content,
        request=httpx.Request(response.request.method, response.request.url),
    )


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = None if outcome is None else outcome.exception()
    logger.info(
        "retrying in %.2f s after attempt %d failed: %s",
        retry_state.upcoming_sleep,
        retry_state.attempt_number,
        error,
    )
