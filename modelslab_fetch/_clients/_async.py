"""`AsyncModelsLab`, which wires the transport, polling, downloads and endpoints together."""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import AsyncIterable, Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import httpx
import sniffio
from pydantic import SecretStr

from .._clock import Clock, EventLoopClock
from .._closing import ClosesOnAsyncExit
from .._config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    ClientConfig,
    NotGiven,
)
from .._endpoints._resource import DEFAULT_WAIT_MANY_CONCURRENCY, AccountStop, AsyncFetchResource
from .._endpoints._routing import (
    Queued,
    QueuedItems,
    Route,
    body_of,
    failure_of,
    refusal,
    resolve,
    says_success,
)
from .._endpoints._row import FetchEndpoint
from .._endpoints._surface import AsyncSurface
from .._endpoints.table import AsyncEnterprise, ClientEndpoints, endpoint_table
from .._errors import ConfigurationError, InvalidRequestIdError, ModelsLabError
from .._events import EventCallback, event_sink
from .._fleet._link import FleetLink, refuse_library
from .._fleet._settings import resolve_fleet
from .._http._proxy import Proxies
from .._http._transport import Transport
from .._jobs._addresses import AddressPolicy, DownloadTransport
from .._jobs._batch import RECENT_OUTCOMES_KEPT, AsyncBatch, ProgressCallback
from .._jobs._deliveries import DeliveryHub
from .._jobs._downloads import Downloaded, Downloader
from .._jobs._polling import DEFAULT_WAIT_TIMEOUT, PollPolicy, check_wait_timeout
from .._jobs._shared import join, share_deliveries
from .._jobs._updates import UpdateCallback
from .._per_loop import PerLoop
from .._results import FetchResult
from .._retry_policy import RetryPolicy
from .._tls import CertTypes, VerifyTypes
from .._webhook_config import resolve_webhooks
from ._webhooks import AsyncWebhooks, receiver_for

__all__ = ["AsyncEnterprise", "AsyncModelsLab", "ClientSettings"]


class ClientSettings:
    """Read-only views of a client's resolved options, the same on both clients."""

    def _settings(self) -> ClientConfig:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._settings().base_url

    @property
    def timeout(self) -> httpx.Timeout:
        """The per-attempt timeout."""
        return self._settings().timeout

    @property
    def max_retries(self) -> int:
        """How many times a transient failure is retried."""
        return self._settings().max_retries

    @property
    def max_concurrency(self) -> int:
        """The most HTTP requests in flight at once, client-wide."""
        return self._settings().max_concurrency

    @property
    def max_requests_per_second(self) -> float | None:
        """The client-wide cap on the request rate, if any."""
        return self._settings().max_requests_per_second

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"


class AsyncModelsLab(ClosesOnAsyncExit, ClientSettings, ClientEndpoints, AsyncSurface):
    """The asynchronous ModelsLab fetch client.

    Use it as `async with AsyncModelsLab() as client:` (or call `aclose()`), then
    `await client.images.wait(request_id)`, or `await client.wait_for(response)` with what
    a generation request returned. Every endpoint (`images`, `video`, `enterprise.flux`,
    ...) offers `fetch`, `wait`, `fetch_many` and `wait_many`; see `docs/endpoints.md`.

    Args:
        api_key: Your ModelsLab API key; defaults to `$MODELSLAB_API_KEY`.
        base_url: The API root, endpoint paths are appended to it; defaults to
            `$MODELSLAB_BASE_URL`, else `https://modelslab.com/api`. Plain `http://`
            is refused except to loopback hosts.
        timeout: Per-request timeout: seconds, an `httpx.Timeout`, or None for none.
        max_retries: How many times a transient failure (network error, timeout, 408,
            429, 5xx, edge error page) is retried before its error is raised.
        max_concurrency: The most HTTP requests in flight at once, shared by every call.
        max_requests_per_second: An optional cap on the rate of requests, client-wide.
        http_client: Your own `httpx.AsyncClient` (proxies, limits, transport); it is
            not closed by this client. Redirects are never followed either way.
        poll_policy: How `wait()` spaces its polls; see `PollPolicy`.
        clock: The time source for polling and retry sleeps; replace it in tests.
        verify: TLS verification for API calls and downloads alike: True (certifi's CA
            bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set before the client is
            created), a CA bundle path, an `ssl.SSLContext`, or False (test servers only).
        cert: A client certificate: a file, `(certfile, keyfile)` or
            `(certfile, keyfile, password)`.
        proxy: A proxy for API calls and downloads: `http://`, `https://` or
            `socks5://` (SOCKS needs `modelslab-fetch[socks]`). Without it, the
            environment's `HTTPS_PROXY`/`NO_PROXY` are honoured. A plain-http loopback
            `base_url` never goes through a proxy.
        trust_env: False ignores the environment's proxies and `SSL_CERT_FILE`.
        default_headers: Headers sent with every request (API calls and downloads).
        retry_policy: How `fetch()` retries transient failures; see `RetryPolicy`.
        http_backend: Which HTTP library carries API calls: "auto" (aiohttp on asyncio;
            httpx under trio, through a SOCKS proxy, or under respx), "aiohttp" or
            "httpx". Decided on the first request; ignored with `http_client=`.
        allow_private_downloads: False (the default): a download whose URL or redirect
            leads to a loopback, private, link-local or other non-public address raises
            `DownloadError` (loopback is allowed when `base_url` is loopback). True: any
            address, for outputs served inside your own network.
        on_event: Called with each `ClientEvent` of this client's traffic, for your own
            progress display or metrics (docs/events.md). It runs on the event loop, must
            return quickly, and an exception it raises is logged, never raised.
        webhook_url: The public URL where `client.webhooks.asgi_app()` (or your view
            calling `client.webhooks.receive`) is mounted; defaults to
            `$MODELSLAB_WEBHOOK_URL`. https only (plain http to loopback hosts). With it,
            a wait also ends when ModelsLab's delivery for its id comes (docs/webhooks.md).
        webhook_secret: At least 32 random characters (a str or `SecretStr`) that make
            each webhook URL a credential; defaults to `$MODELSLAB_WEBHOOK_SECRET`.
            Needed with `webhook_url`, and the reverse.
        trust_webhooks: False (the default): a delivery is confirmed by one fetch. True:
            the delivery's payload is the result, with no fetch (only if your webhook URLs
            cannot leak, and you never wait on one id on two endpoints at once).
        redis_url: A Redis (or Valkey) URL, `redis://host:6379/0`; defaults to
            `$MODELSLAB_REDIS_URL`. Clients on the same Redis and `redis_prefix`, in any
            process, share webhook deliveries, rate-limit pauses, the
            `max_requests_per_second` budget and the polling of an id; Redis down, each
            works alone. asyncio only; needs `modelslab-fetch[redis]` (docs/deployment.md).
        redis_prefix: The prefix of every Redis key and channel (default
            `"modelslab_fetch:"`, or `$MODELSLAB_REDIS_PREFIX`): clients share work only
            with clients of the same prefix.

    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_requests_per_second: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        poll_policy: PollPolicy | None = None,
        clock: Clock | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
        default_headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
        http_backend: Literal["auto", "aiohttp", "httpx"] = "auto",
        allow_private_downloads: bool = False,
        on_event: EventCallback | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | SecretStr | None = None,
        trust_webhooks: bool = False,
        redis_url: str | None = None,
        redis_prefix: str | None = None,
    ) -> None:
        events = event_sink(on_event)
        fleet = resolve_fleet(redis_url, redis_prefix)
        if fleet is not None:
            refuse_fleet_under_trio()
        config = ClientConfig.resolve(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_requests_per_second=max_requests_per_second,
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
            default_headers=default_headers,
            retry_policy=retry_policy,
            http_backend=http_backend,
            allow_private_downloads=allow_private_downloads,
        )
        webhooks = resolve_webhooks(webhook_url, webhook_secret, trust=trust_webhooks)
        self._config = dataclasses.replace(config, webhooks=webhooks)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError(
                "http_client must be an httpx.AsyncClient (the SDK is async inside, the "
                f"blocking ModelsLab too); got {type(http_client).__name__}: create an "
                "httpx.AsyncClient with the same settings instead"
            )
        clock = clock if clock is not None else EventLoopClock()
        poll_policy = poll_policy if poll_policy is not None else PollPolicy()
        self._fleet = (
            None
            if fleet is None
            else FleetLink(fleet, events=events, max_rate=config.max_requests_per_second)
        )
        transport = Transport(
            self._config, clock=clock, http_client=http_client, events=events, outside=self._fleet
        )
        if self._fleet is not None:
            # A client dropped without aclose() stops its Redis threads when collected.
            weakref.finalize(self, self._fleet.close)
        # One hub per client, shared by its twins (and with a fleet, other workers' records).
        hub = (
            None
            if webhooks is None and fleet is None
            else DeliveryHub(
                trust=webhooks is not None and webhooks.trust, pushes=webhooks is not None
            )
        )
        receiver = (
            None if webhooks is None or hub is None else receiver_for(webhooks, hub, transport)
        )
        if self._fleet is not None and hub is not None:
            join(self._fleet, hub)
            if receiver is not None:
                receiver.share = share_deliveries(self._fleet)
        self._hub = hub
        self._webhooks = AsyncWebhooks(receiver)
        # An httpx client's connections belong to one event loop: one downloader per loop.
        downloaders = PerLoop(self._new_downloader, _close_downloader)
        self._wire(transport, downloaders, http_client, poll_policy, clock)

    def _wire(
        self,
        transport: Transport,
        downloaders: PerLoop[tuple[Downloader, httpx.AsyncClient | None]],
        http_client: httpx.AsyncClient | None,
        poll_policy: PollPolicy,
        clock: Clock,
    ) -> None:
        self._transport = transport
        self._downloaders = downloaders
        self._http_client = http_client
        self._poll_policy = poll_policy
        self._clock = clock
        names = {row: name for name, row in self._table().items()}
        hub, fleet = self._hub, self._fleet
        self._bind(
            lambda endpoint: AsyncFetchResource(
                endpoint,
                transport,
                poll_policy=poll_policy,
                clock=clock,
                # A row of no table (wait_for(endpoint=FetchEndpoint(...))): its path.
                name=names.get(endpoint, endpoint.path_template),
                deliveries=hub,
                fleet=fleet,
            )
        )

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        poll_policy: PollPolicy | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven | None = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
    ) -> AsyncModelsLab:
        """A client with other settings, sharing this one's connections and limits.

        `client.with_options(timeout=5, max_retries=0).images.fetch(id)` costs nothing per
        call; this client is unchanged, closing either closes both, and arguments left out
        keep this client's setting.
        """
        if not isinstance(poll_policy, NotGiven | PollPolicy):
            raise ConfigurationError(
                f"poll_policy must be a PollPolicy; got {type(poll_policy).__name__}"
            )
        config = self._config.with_changes(
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            retry_policy=retry_policy,
        )
        other = object.__new__(type(self))
        other._config = config
        other._webhooks = self._webhooks
        other._hub = self._hub
        other._fleet = self._fleet
        other._wire(
            self._transport.with_config(config),
            self._downloaders,
            self._http_client,
            self._poll_policy if isinstance(poll_policy, NotGiven) else poll_policy,
            self._clock,
        )
        return other

    def _settings(self) -> ClientConfig:
        return self._config

    @property
    def closed(self) -> bool:
        """Whether `aclose()` has been called."""
        return self._transport.closed

    @property
    def requests_in_flight(self) -> int:
        """HTTP requests of this client (and its copies) in flight now: <= `max_concurrency`."""
        return self._transport.in_flight

    @property
    def webhooks(self) -> AsyncWebhooks:
        """ModelsLab's webhooks: request fields, the receiver, deliveries (`AsyncWebhooks`)."""
        return self._webhooks

    async def wait_for(
        self,
        queued: Queued,
        *,
        endpoint: str | FetchEndpoint[Any] | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_update: UpdateCallback | None = None,
    ) -> FetchResult:
        """Wait for the job a generation request queued; return its success result.

        `queued` is the generation response: the decoded JSON, or a `FetchResult`. Its
        endpoint and id come from its `fetch_result` URL (which must lie below `base_url`;
        it is matched against the endpoint table, never contacted as given), or from
        `endpoint=` (a name such as `"enterprise.three_d"`, or a `FetchEndpoint`). A
        successful `queued` is returned at once; otherwise the first poll waits for its
        `eta`. The result is the endpoint's type (`VoiceResult`, ...). `on_update` hears
        of every poll as for `wait()` (the response counts as poll 1). A response that
        reports an error is read through the error table, e.g. `"Invalid Api Key"` raises
        `AuthenticationError`, a queue limit `RateLimitError`, a validation message
        `BadRequestError`, any other `failed`/`error` `GenerationFailedError`.
        Raises `ForeignFetchURLError` (nothing sent), `ConfigurationError`,
        `GenerationFailedError`, `WaitTimeoutError`, and what `wait()` raises.
        """
        check_wait_timeout(timeout)
        body = body_of(queued)
        clean = self._transport.redact_json
        # An error the response reports is raised with the server's words, before routing.
        refused = refusal(body, base_url=self.base_url, clean=clean)
        if refused is not None:
            raise refused
        failed: ModelsLabError | None = None
        try:
            route = resolve(body, base_url=self.base_url, table=self._table(), endpoint=endpoint)
        except (ConfigurationError, InvalidRequestIdError):
            if says_success(body):  # nothing to fetch: keep it, wherever it came from
                return FetchResult.from_body(body, request_id=str(body.get("id") or ""))
            failed = failure_of(body, clean=clean)
            if failed is None:
                raise
        if failed is not None:  # raised outside the handler: no routing complaint attached
            raise failed
        return await self._wait_on(route, body, timeout, on_update)

    def wait_for_many(
        self,
        queued_items: Iterable[Queued] | AsyncIterable[Queued],
        *,
        endpoint: str | FetchEndpoint[Any] | None = None,
        concurrency: int | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
        on_update: UpdateCallback | None = None,
    ) -> AsyncBatch[FetchResult]:
        """`wait_for` for many generation responses: one `Outcome` per input, lazily.

        Each input is routed as by `wait_for`; one that cannot be, or that reports an
        error, gets an outcome with that error, sends nothing and stops no other. Bounded,
        lazy and stopped by an account error as `wait_many`. An outcome's `request_id` is
        the job's id (`name:id` if the same id came just before from another endpoint),
        or `input-N` (N its position from 0) for an input with no usable id.
        """
        check_wait_timeout(timeout)
        self._transport.calls.check_open()
        width = DEFAULT_WAIT_MANY_CONCURRENCY if concurrency is None else concurrency
        items = QueuedItems(
            queued_items,
            base_url=self.base_url,
            table=self._table(),
            endpoint=endpoint,
            remembered=RECENT_OUTCOMES_KEPT + (width if isinstance(width, int) else 0),
            clean=self._transport.redact_json,
        )
        stop = AccountStop()

        async def work(key: str) -> FetchResult:
            # An input's own error is raised outside the account guard: nothing was sent.
            route, body = items.take(key)
            if route is None:  # already a success, with no endpoint named
                return FetchResult.from_body(body, request_id=key)
            chosen = route
            return await stop.guard(lambda _: self._wait_on(chosen, body, timeout, on_update))(key)

        return AsyncBatch(
            items.keys(),
            work,
            concurrency=width,
            ordered=ordered,
            on_progress=on_progress,
        )

    async def _wait_on(
        self,
        route: Route,
        body: dict[str, Any],
        timeout: float | None,
        on_update: UpdateCallback | None,
    ) -> FetchResult:
        """Wait on `route`'s job, its generation response `body` the first poll."""
        resource = self._resource_for(route.endpoint)
        result: FetchResult = await resource._wait_from(route.request_id, body, timeout, on_update)
        return result

    def _table(self) -> dict[str, FetchEndpoint[Any]]:
        return endpoint_table(type(self))

    async def download(self, result: FetchResult, directory: str | os.PathLike[str]) -> list[Path]:
        """Save `result`'s images into `directory` (created if needed); return their paths.

        Files are named `{request_id}-{n}{ext}` for `images`, `{endpoint}.{request_id}-{n}{ext}`
        for the others (`video.123-0.mp4`), whatever the URLs say. Each is written to a
        temporary file renamed into place, so a file under its final name is complete and
        is not downloaded again. Only http(s) URLs from public addresses (see
        `allow_private_downloads`), redirects followed, at most 64 MB each; transient
        failures are retried as API calls are. The first download into a folder removes
        the `.part` files a killed run left there. Raises `DownloadError`.
        """
        # httpx's connections close in shielded sections: anyio's own scope.
        with self._transport.calls.scope(result.request_id or None, shields=True):
            return await self._get_downloader().download(result, directory)

    async def download_many(
        self, results: Iterable[FetchResult], directory: str | os.PathLike[str]
    ) -> list[Downloaded]:
        """Save the images of many results, a few at a time; one `Downloaded` per result."""
        with self._transport.calls.scope(shields=True):
            return await self._get_downloader().download_many(results, directory)

    def _get_downloader(self) -> Downloader:
        return self._downloaders.get()[0]

    def _new_downloader(self) -> tuple[Downloader, httpx.AsyncClient | None]:
        config = self._config
        addresses = AddressPolicy(
            allow_private=config.allow_private_downloads,
            allow_loopback=config.base_url_is_loopback,
        )
        options: dict[str, Any] = {
            "addresses": addresses,
            "retry_policy": config.retry_policy,
            "retries": config.retries,  # the policy's count, else max_retries
            "clock": self._clock,
        }
        if self._http_client is not None:
            # Its connections are not ours to check: names are looked up beforehand.
            return Downloader(self._http_client, lookup_names=True, **options), None
        # Plain GETs with no key, so proxies are fine; the same TLS and headers as API calls.
        transport = DownloadTransport(
            addresses,
            ssl_context=config.tls(),
            proxies=Proxies.of(config.proxy, trust_env=config.trust_env),
        )
        owned = httpx.AsyncClient(
            timeout=config.timeout,
            verify=config.tls(),
            trust_env=False,
            headers=dict(config.default_headers),
            transport=transport,
        )
        return Downloader(owned, **options), owned

    async def aclose(self) -> None:
        """Close connections; calls in flight end, and later calls fail, with `ClientClosedError`.

        Safe to call twice.
        """
        try:
            await self._transport.aclose()
        finally:
            self._webhooks.close()
            try:
                await self._downloaders.aclose()
            finally:
                if self._fleet is not None:
                    await self._fleet.aclose()


_blocking_construction: ContextVar[bool] = ContextVar(
    "modelslab_fetch_blocking_construction", default=False
)
"""Set while `ModelsLab` makes its `AsyncModelsLab`: it runs on its own asyncio loop."""


def refuse_fleet_under_trio() -> None:
    """Refuse `redis_url` under trio: redis.asyncio is asyncio's."""
    if _blocking_construction.get():
        return
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return  # made outside any loop: refused on its first call under trio, if ever
    refuse_library(library)


async def _close_downloader(downloader: tuple[Downloader, httpx.AsyncClient | None]) -> None:
    owned = downloader[1]
    if owned is not None:  # an http_client you passed stays open: it is yours
        await owned.aclose()
