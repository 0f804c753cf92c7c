"""The transport: one JSON POST to ModelsLab, its failures mapped to our errors and retried."""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Mapping
from functools import partial
from json.encoder import encode_basestring_ascii as _quoted
from typing import TYPE_CHECKING, Any

import httpx
import sniffio

from .._clock import Clock
from .._closing import CallsInFlight
from .._config import ClientConfig
from .._errors import (
    APIConnectionError,
    APITimeoutError,
    BackendCertificateError,
    BackendConnectionError,
    BackendResponseTooLarge,
    BackendTimeout,
    BackendUnknownHost,
    CertificateVerificationError,
    ConfigurationError,
    HostNotFoundError,
    ModelsLabError,
    RateLimitError,
    ResponseParseError,
)
from .._events import (
    ClientPaused,
    EventSink,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from .._logging import redact_from_logs
from .._per_loop import LoopCheck, PerLoop
from .._redaction import Redactor, SecretBody
from .._retry_policy import exponential
from .._version import __version__
from ._answers import decode_response, excerpt_of, is_transient, unchanged
from ._backends._contract import MAX_RESPONSE_BYTES, Backend, RawResponse, overall_deadline
from ._backends._httpx import HttpxBackend, httpx_is_patched
from ._proxy import Proxies, refuse_cleartext_proxy, socks_support_needed
from ._retrying import with_retries, worth_retrying
from ._traffic import OutsideTraffic, TrafficControl

if TYPE_CHECKING:  # tenacity is imported on the first retry (see _retrying)
    from tenacity import RetryCallState

__all__ = ["Transport", "is_transient"]

logger = logging.getLogger("modelslab_fetch")

RATE_LIMIT_PAUSE = 1.0
"""The first client-wide pause after a rate limit that states no wait; it doubles with
each rate limit in a row (with jitter), up to `MAX_RATE_LIMIT_PAUSE`."""

MAX_RATE_LIMIT_PAUSE = 30.0
"""The longest pause taken on our own guess (ModelsLab's documented queue waits are ~30 s)."""


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
        events: EventSink | None = None,
        outside: OutsideTraffic | None = None,
    ) -> None:
        if http_client is not None:
            refuse_cleartext_proxy(http_client, config.base_url)
        self._config = config
        self._clock = clock
        self.events = events
        """Where this client's `ClientEvent`s go (`on_event=`), or None: none are made."""
        self._bound_of: tuple[httpx.Timeout | None, float | None] = (None, None)
        self._traffic = TrafficControl(
            max_concurrency=config.max_concurrency,
            max_rate=config.max_requests_per_second,
            clock=clock,
            outside=outside,
        )
        self._given_backend = (
            None if http_client is None else HttpxBackend(http_client, owned=False)
        )
        self._given_loop = LoopCheck()
        # Connections belong to one event loop: one backend per loop (see _per_loop).
        self._aiohttp_backends = PerLoop(self._new_aiohttp_backend, _close_backend)
        self._httpx_backends = PerLoop(self._new_httpx_backend, _close_backend)
        self._kind: str | None = None  # "aiohttp" or "httpx", once chosen
        self._key = config.api_key.get_secret_value()
        self._key_json = _quoted(self._key)
        # Every form the key may come back in (raw, JSON- or URL-escaped...) is redacted
        # from whatever the server sends, and from httpx's and httpcore's log records.
        # The webhook URL too, with the token after it: ModelsLab echoes it in `meta`.
        webhooks = config.webhooks
        self._redactor = Redactor(
            self._key, urls=() if webhooks is None else webhooks.redacted_forms()
        )
        redact_from_logs(self._redactor)
        # Shared with every `with_config` copy: closing one closes them all, and ends
        # the calls in flight on any of them.
        self.calls = CallsInFlight()
        self._rate_limits_in_a_row = 0
        self._headers = _headers_for(config)
        # The proxy of every API call, decided once (see _proxy). A SOCKS proxy goes
        # through httpx (with socksio), which speaks it; aiohttp does not without another
        # dependency.
        self._proxy = Proxies.of(config.proxy, trust_env=config.trust_env).for_url(
            httpx.URL(config.base_url)
        )
        self._via_httpx = self._proxy is not None and self._proxy.lower().startswith("socks")

    def __repr__(self) -> str:
        return f"Transport(base_url={self._config.base_url!r})"

    def with_config(self, config: ClientConfig) -> Transport:
        """A copy with other settings (timeout, retries, headers) sharing everything else.

        The copy uses the same connections, the same client-wide limits (concurrency,
        rate, rate-limit pauses) and the same closed state: closing either closes both.
        """
        other = copy.copy(self)
        other._config = config
        other._headers = _headers_for(config)
        return other

    @property
    def cancels_natively(self) -> bool:
        """Whether this client's calls may run in asyncio's own cancel scope.

        Only once its requests are known to go through its own aiohttp backend: httpx's
        pool hands a connection back inside a section shielded by anyio, which only
        anyio's scope respects (cancelled there, the connection is lost to the pool).
        """
        return self._kind == "aiohttp" and self._given_backend is None

    def attempt_bound(self) -> float | None:
        """The longest one request made now can take, or None when it may wait unbounded.

        Each attempt ends by `overall_deadline` of the timeout, once admitted; admitted
        at once unless the client is at `max_concurrency`, paused or keeping a rate.
        """
        if not self._traffic.can_admit_now():
            return None
        timeout = self._config.timeout
        if self._bound_of[0] is not timeout:  # one timeout per client: worked out once
            self._bound_of = (timeout, overall_deadline(timeout))
        return self._bound_of[1]

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` is worth asking again, under this client's `RetryPolicy`."""
        policy = self._config.retry_policy
        return is_transient(error, statuses=policy.statuses, edge_pages=policy.retry_edge_pages)

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
        return self.calls.closed

    async def aclose(self) -> None:
        """End calls in flight, close connections; an `http_client` you passed stays open."""
        self.calls.close()
        try:
            await self._aiohttp_backends.aclose()
        finally:
            await self._httpx_backends.aclose()

    def _backend(self, request_id: str | None) -> Backend:
        self.calls.check_open(request_id)  # a retry still under way when the client closed
        if self._given_backend is not None:
            self._given_loop.check()
            return self._given_backend
        if self._kind is None:
            self._kind = self._choose_backend()
        if self._kind == "httpx":
            return self._httpx_backends.get()
        return self._aiohttp_backends.get()

    def _choose_backend(self) -> str:
        """Which backend this client uses, decided once, on its first request.

        Only then is the running async library known. `http_backend="auto"` (the
        default) picks aiohttp, the cheapest per request (see docs/performance.md),
        where it can run, and httpx where it cannot or should not: under trio (aiohttp
        runs only on the standard library's event loop), through a SOCKS proxy (httpx
        speaks it), and when respx has patched httpx (its mocks see only httpx's
        requests).
        """
        wanted = self._config.http_backend
        on_trio = sniffio.current_async_library() == "trio"
        if wanted == "aiohttp" and on_trio:
            raise ConfigurationError(
                "http_backend='aiohttp' cannot run under trio (aiohttp runs only on the "
                "standard library's event loop): leave http_backend='auto', which uses "
                "httpx under trio, or pass http_backend='httpx'"
            )
        if wanted != "auto":
            return wanted
        if on_trio or self._via_httpx or httpx_is_patched():
            return "httpx"
        return "aiohttp"

    def _new_aiohttp_backend(self) -> Backend:
        # Imported here, on the first request: `import modelslab_fetch` stays free of
        # aiohttp's import cost for programs that never send, or send through httpx.
        from ._backends._aiohttp import AiohttpBackend  # noqa: PLC0415

        config = self._config
        return AiohttpBackend(
            max_connections=config.max_concurrency, ssl_context=config.tls(), proxy=self._proxy
        )

    def _new_httpx_backend(self) -> Backend:
        config = self._config
        with socks_support_needed():
            # trust_env off: the proxy was decided above, and httpx would add one for a
            # plain-http loopback base_url, where the key would cross it in clear text.
            client = httpx.AsyncClient(
                timeout=config.timeout, verify=config.tls(), proxy=self._proxy, trust_env=False
            )
        return HttpxBackend(client, owned=True)

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
        self.calls.check_open(request_id)
        url = self._config.base_url + path
        # Wrapped, so that no traceback's locals (as error trackers record them) show it.
        content = self._redactor.secret(request_json(body, self._key, self._key_json))
        # The first attempt outside `with_retries`: most succeed, and its closures and
        # frame would cost every request.
        try:
            return await self._post_once(url, content, request_id=request_id)
        except Exception as exc:
            config = self._config
            if (
                not retry
                or not config.retries
                or not worth_retrying(exc, self.is_transient, config.retry_policy)
            ):
                raise
            first = exc
        return await with_retries(
            lambda: self._post_once(url, content, request_id=request_id),
            transient=self.is_transient,
            retries=config.retries,
            policy=config.retry_policy,
            clock=self._clock,
            on_retry=None if self.events is None else partial(self._retry_event, request_id),
            first=first,
        )

    async def _post_once(
        self, url: str, content: SecretBody, *, request_id: str | None
    ) -> dict[str, Any]:
        failure: ModelsLabError
        events = self.events
        sent_at = 0.0
        traffic = self._traffic
        try:
            # `async with traffic`, without its two coroutines when there is room at once.
            if not traffic.admit_nowait():
                await traffic.admit()
            try:
                backend = self._backend(request_id)
                # Without `on_event`, events cost a request this test and one in
                # `_decode` (or on failure, below): no allocation, no clock reading.
                if events is not None:
                    sent_at = self._clock.now()
                    events(RequestSent(request_id, url))
                # Redacted before it is bound to any name: the unredacted response never
                # sits in a local of a frame an error's traceback shows.
                raw, may_hold_key = self._redacted(
                    await backend.post(url, content.unwrap(), self._headers, self._config.timeout)
                )
            finally:
                traffic.release()
        except BackendTimeout as exc:
            failure = APITimeoutError(
                f"timed out talking to {url} ({self._redact_text(exc.detail)})",
                request_id=request_id,
                url=url,
                cause="no answer in time",
            )
        except BackendCertificateError as exc:
            failure = CertificateVerificationError(
                f"the TLS certificate of {url} failed verification "
                f"({self._redact_text(exc.detail)}); not retried. Behind a TLS-inspecting "
                "proxy, set SSL_CERT_FILE to your company's CA bundle before creating the "
                "client, or pass your own http_client",
                request_id=request_id,
                url=url,
                cause=self._redact_text(exc.cause),
            )
        except BackendUnknownHost as exc:
            failure = HostNotFoundError(
                f"the host of {url} does not exist ({self._redact_text(exc.detail)}); "
                "not retried: check base_url or MODELSLAB_BASE_URL",
                request_id=request_id,
                url=url,
                cause=exc.cause,
            )
        except BackendConnectionError as exc:
            failure = APIConnectionError(
                f"could not talk to {url} ({self._redact_text(exc.detail)})",
                request_id=request_id,
                url=url,
                cause=exc.cause,
            )
        except BackendResponseTooLarge as exc:
            failure = ResponseParseError(
                f"HTTP {exc.status_code} response is larger than "
                f"{MAX_RESPONSE_BYTES // 2**20} MB; refused (a fetch answer is a few kB)",
                excerpt=excerpt_of(self._redactor.bytes(exc.head)),
                status_code=exc.status_code,
                request_id=request_id,
                problem=f"larger than {MAX_RESPONSE_BYTES // 2**20} MB",
            )
        else:
            return self._decode(raw, request_id=request_id, sent_at=sent_at, walk=may_hold_key)
        if events is not None:
            events(RequestFailed(request_id, url, failure, self._clock.now() - sent_at))
        # Raised outside the handlers on purpose: nothing of the failed request (whose body
        # holds the key) or of the unredacted response may ride along as __context__.
        raise failure

    def _decode(
        self, raw: RawResponse, *, request_id: str | None, sent_at: float = 0.0, walk: bool = True
    ) -> dict[str, Any]:
        # `raw` is already redacted (see `_redacted`): body, headers and reason phrase.
        logger.debug("POST %s -> HTTP %s (request %s)", raw.url, raw.status_code, request_id)
        decoded = decode_response(
            raw,
            raw.content,
            request_id=request_id,
            now=time.time(),
            # Redacted again once decoded: JSON may spell the key in escapes no byte-level
            # match anticipated; decoded, every string holds it plainly. Unless `walk` is
            # false: the body was shown to hold no form of it (`Redactor.may_hold`).
            clean=self._redactor.json if walk else unchanged,
        )
        if self.events is not None:
            error = decoded if isinstance(decoded, ModelsLabError) else None
            elapsed = self._clock.now() - sent_at
            self.events(ResponseReceived(request_id, raw.url, raw.status_code, elapsed, error))
        if isinstance(decoded, RateLimitError):
            self._pause_for(decoded)
        else:
            self._rate_limits_in_a_row = 0
        if isinstance(decoded, ModelsLabError):
            raise decoded
        return decoded

    def _pause_for(self, error: RateLimitError) -> None:
        # One rate limit pauses the whole client, so the other requests in flight do not
        # each run into the limit and back off on their own. The server's stated wait is
        # taken as is. Without one, each new pause doubles (with jitter, so clients
        # sharing an account do not come back in step); the answers to requests sent
        # before the pause began are part of the same rate limit, not a new one.
        if error.retry_after is not None:
            pause = error.retry_after
        elif self._traffic.paused:
            return
        else:
            self._rate_limits_in_a_row += 1
            step = exponential(self._rate_limits_in_a_row, RATE_LIMIT_PAUSE, MAX_RATE_LIMIT_PAUSE)
            pause = step * random.uniform(1.0, 1.25)  # noqa: S311
        if pause <= self._config.retry_policy.max_stated_wait and self._traffic.pause(pause):
            logger.warning("rate limited: pausing all requests of this client for %.2f s", pause)
            if self.events is not None:
                self.events(ClientPaused(pause, error))

    def _retry_event(self, request_id: str | None, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = None if outcome is None else outcome.exception()
        if self.events is not None and isinstance(error, Exception):
            # A rate limit's own wait is the client-wide pause, not the retry's sleep.
            delay = max(retry_state.upcoming_sleep, self._traffic.pause_left)
            self.events(RetryScheduled(request_id, retry_state.attempt_number, delay, error))

    def _redacted(self, raw: RawResponse) -> tuple[RawResponse, bool]:
        # A misbehaving server or proxy may echo the request body back, in the body, a
        # header or the reason phrase (`HTTP/1.1 400 {"key": ...}`): the key must not reach
        # results, errors or logs through any of those doors. Also says whether the body
        # may hold the key in any form: decided once per body, by a few byte searches,
        # so that neither the body's bytes nor its decoded JSON are walked when it cannot.
        redact = self._redactor
        may_hold = redact.may_hold(raw.content)
        return RawResponse(
            raw.status_code,
            redact.headers(raw.headers),
            redact.bytes(raw.content) if may_hold else raw.content,
            raw.url,
            redact.text(raw.reason),
        ), may_hold

    def _redact_text(self, text: str) -> str:
        return self._redactor.text(text)

    def redact_json(self, value: Any) -> Any:
        """Decoded JSON with this client's key redacted from every string.

        For bodies that reach the SDK without an HTTP answer, such as a generation response.
        """
        return self._redactor.json(value)


USER_AGENT = f"modelslab-fetch/{__version__}"


async def _close_backend(backend: Backend) -> None:
    await backend.aclose()


def request_json(body: Mapping[str, Any], key: str, key_json: str) -> bytes:
    """`json.dumps({**body, "key": key}).encode()`; `key_json` is `key` as a JSON string.

    Every fetch body is one or two text fields: they are written here directly, as
    json.dumps would, since its Python-level steps cost five times the writing itself.
    """
    if "key" not in body and all(
        type(name) is str and type(value) is str for name, value in body.items()
    ):
        fields = "".join(f"{_quoted(name)}: {_quoted(value)}, " for name, value in body.items())
        return f'{{{fields}"key": {key_json}}}'.encode()
    return json.dumps({**body, "key": key}).encode()


def _headers_for(config: ClientConfig) -> dict[str, str]:
    # Yours first (a user-agent of your own, a header your proxy wants), then ours: the
    # body is always JSON.
    return {
        "user-agent": USER_AGENT,
        **dict(config.default_headers),
        "content-type": "application/json",
    }
