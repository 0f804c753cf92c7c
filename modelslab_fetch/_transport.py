"""Layer 1: send one JSON POST to ModelsLab, map failures to our errors, retry transient ones."""

from __future__ import annotations

import json
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

from ._backends import (
    MAX_RESPONSE_BYTES,
    AiohttpBackend,
    Backend,
    BackendConnectionError,
    BackendResponseTooLarge,
    BackendTimeout,
    HttpxBackend,
    RawResponse,
    httpx_is_patched,
)
from ._clock import Clock
from ._config import ClientConfig
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ModelsLabError,
    RateLimitError,
    ResponseParseError,
)
from ._http_errors import RETRYABLE_STATUS_CODES, decode_response, excerpt_of, is_html
from ._per_loop import LoopCheck, PerLoop
from ._traffic import TrafficControl
from ._version import __version__

__all__ = ["MAX_RETRY_AFTER", "Transport", "is_transient"]

logger = logging.getLogger("modelslab_fetch")

MAX_RETRY_AFTER = 60.0
"""A `Retry-After` longer than this is not slept through: the error is raised at once."""

RATE_LIMIT_PAUSE = 1.0
"""How long a 429 without `Retry-After` pauses the client's traffic."""

REDACTED = b"***"


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
    return error.status_code >= 500 and is_html(error.response.headers, error.response.content)


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
    the `ModelsLabError` hierarchy, and retries transient failures with tenacity. Every
    request passes the client's `TrafficControl` (cap, rate, shared 429 pause).
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
        self._traffic = TrafficControl(
            max_concurrency=config.max_concurrency,
            max_rate=config.max_requests_per_second,
            clock=clock,
        )
        self._given_backend = (
            None if http_client is None else HttpxBackend(http_client, owned=False)
        )
        self._given_loop = LoopCheck()
        # Connections belong to one event loop: one backend per loop (see _per_loop).
        self._fast_backends = PerLoop(self._new_fast_backend, _close_backend)
        self._fallback_backends = PerLoop(self._new_fallback_backend, _close_backend)
        self._key = config.api_key.get_secret_value()
        # The key as it may come back: raw, or JSON-escaped by a server that escapes "/"
        # (PHP's default). Both are redacted from whatever the server sends.
        forms = {self._key, json.dumps(self._key)[1:-1], self._key.replace("/", "\\/")}
        self._key_forms = tuple(sorted((form.encode() for form in forms), key=len, reverse=True))
        self._closed = False

    def __repr__(self) -> str:
        return f"Transport(base_url={self._config.base_url!r})"

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
        """Close connections this transport opened; an `http_client` you passed stays open."""
        self._closed = True
        try:
            await self._fast_backends.aclose()
        finally:
            await self._fallback_backends.aclose()

    def _backend(self, request_id: str | None) -> Backend:
        if self._closed:  # a retry still under way when the client closed
            raise ClientClosedError(
                "this client is closed; create a new one", request_id=request_id
            )
        if self._given_backend is not None:
            self._given_loop.check()
            return self._given_backend
        if httpx_is_patched():
            return self._fallback_backends.get()
        return self._fast_backends.get()

    def _new_fast_backend(self) -> Backend:
        return AiohttpBackend(max_connections=self._config.max_concurrency)

    def _new_fallback_backend(self) -> Backend:
        return HttpxBackend(httpx.AsyncClient(timeout=self._config.timeout), owned=True)

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
        content = json.dumps({**body, "key": self._key}).encode()
        try:
            return await self._post_once(url, content, request_id=request_id)
        except ModelsLabError as error:
            if not (retry and self._config.max_retries and is_transient(error)):
                raise
            first_failure = error
        # The first attempt ran outside tenacity (most succeed, and tenacity costs CPU on
        # every call); tenacity takes over from its failure, replayed as attempt one.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._config.max_retries + 1),
            wait=_wait_retry_after_or_backoff(),
            retry=retry_if_exception(is_transient),
            sleep=self._clock.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise first_failure
                return await self._post_once(url, content, request_id=request_id)
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    async def _post_once(
        self, url: str, content: bytes, *, request_id: str | None
    ) -> dict[str, Any]:
        failure: APIConnectionError
        try:
            async with self._traffic:
                backend = self._backend(request_id)
                raw = await backend.post(url, content, _HEADERS, self._config.timeout)
        except BackendTimeout as exc:
            failure = APITimeoutError(
                f"timed out talking to {url} ({self._redact_text(exc.detail)})",
                request_id=request_id,
            )
        except BackendConnectionError as exc:
            failure = APIConnectionError(
                f"could not talk to {url} ({self._redact_text(exc.detail)})",
                request_id=request_id,
            )
        except BackendResponseTooLarge as exc:
            raise ResponseParseError(
                f"HTTP {exc.status_code} response is larger than "
                f"{MAX_RESPONSE_BYTES // 2**20} MB; refused (a fetch answer is a few kB)",
                excerpt=excerpt_of(self._redact(exc.head)),
                status_code=exc.status_code,
                request_id=request_id,
            ) from None
        else:
            return self._decode(raw, request_id=request_id)
        # Raised outside the handler on purpose: nothing of the failed request (whose body
        # holds the key) may ride along as __context__.
        raise failure

    def _decode(self, raw: RawResponse, *, request_id: str | None) -> dict[str, Any]:
        logger.debug("POST %s -> HTTP %s (request %s)", raw.url, raw.status_code, request_id)
        content = self._redact(raw.content)
        if any(self._key in value for value in raw.headers.values()):
            raw = self._redacted_headers(raw)
        decoded = decode_response(raw, content, request_id=request_id, now=time.time())
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

    def _redact(self, content: bytes) -> bytes:
        # A misbehaving server or proxy may echo the request body back: the key must not
        # reach results, errors or logs through that door.
        for form in self._key_forms:
            if form in content:
                content = content.replace(form, REDACTED)
        return content

    def _redacted_headers(self, raw: RawResponse) -> RawResponse:
        # Headers reach errors too (a Location in a redirect's message, the response).
        headers = httpx.Headers(
            [(name, self._redact_text(value)) for name, value in raw.headers.items()]
        )
        return RawResponse(raw.status_code, headers, raw.content, raw.url, raw.reason)

    def _redact_text(self, text: str) -> str:
        return text.replace(self._key, REDACTED.decode())


_HEADERS = {"content-type": "application/json", "user-agent": f"modelslab-fetch/{__version__}"}


async def _close_backend(backend: Backend) -> None:
    await backend.aclose()


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = None if outcome is None else outcome.exception()
    logger.info(
        "retrying in %.2f s after attempt %d failed: %s",
        retry_state.upcoming_sleep,
        retry_state.attempt_number,
        error,
    )
