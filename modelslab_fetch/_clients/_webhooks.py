"""`client.webhooks`: the URL to give ModelsLab, the receiver, and the deliveries it took.

Nothing here blocks or makes a request: a receiver may call it from any thread or loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .._errors import ConfigurationError
from .._http._transport import Transport
from .._jobs._deliveries import (
    DeliveryCallback,
    DeliveryHub,
    DeliveryIterator,
    DeliveryStream,
    WebhookDelivery,
)
from .._jobs._webhook_apps import WebhookASGIApp, WebhookWSGIApp
from .._jobs._webhooks import WebhookReceiver
from .._logging import redact_from_logs as register_for_log_redaction
from .._redaction import Redactor
from .._webhook_config import WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV, WebhookSettings

__all__ = ["AsyncWebhooks", "Webhooks", "receiver_for"]

_NOT_CONFIGURED = (
    "webhooks are not configured: pass webhook_url=... (the public https URL where "
    "client.webhooks.asgi_app() is mounted) and webhook_secret=... to the client, or set "
    f"{WEBHOOK_URL_ENV} and {WEBHOOK_SECRET_ENV}"
)


def receiver_for(
    settings: WebhookSettings, hub: DeliveryHub, transport: Transport
) -> WebhookReceiver:
    """The receiver of a client: its payloads redacted as the client's answers are."""
    receiver = WebhookReceiver(settings, hub, clean=transport.redact_json)
    # Should the secret reach a log record (an app logging its settings), the filter
    # removes it as it does the key (the URL is in the transport's redactor already).
    receiver.secret_redactor = Redactor(settings.secret.get_secret_value())
    register_for_log_redaction(receiver.secret_redactor)
    return receiver


class _Webhooks:
    """What both clients' `webhooks` offer; `deliveries()` is each client's own."""

    def __init__(self, receiver: WebhookReceiver | None) -> None:
        self._receiver_or_none = receiver

    @property
    def hub_or_none(self) -> DeliveryHub | None:
        """The client's deliveries hub, if webhooks are configured."""
        return None if self._receiver_or_none is None else self._receiver_or_none.hub

    def __repr__(self) -> str:
        if self._receiver_or_none is None:
            return f"{type(self).__name__}(configured=False)"
        return f"{type(self).__name__}(configured=True, trusted={self.trusted})"

    @property
    def configured(self) -> bool:
        """Whether `webhook_url` and `webhook_secret` were given (or found in the environment)."""
        return self._receiver_or_none is not None

    @property
    def trusted(self) -> bool:
        """Whether a delivery's payload is taken as the result, with no confirming fetch."""
        return self._receiver_or_none is not None and self._receiver_or_none.settings.trust

    def _receiver(self) -> WebhookReceiver:
        if self._receiver_or_none is None:
            raise ConfigurationError(_NOT_CONFIGURED)
        return self._receiver_or_none

    def _hub(self) -> DeliveryHub:
        return self._receiver().hub

    def fields(self, track_id: str | None = None) -> dict[str, str]:
        """The `webhook` and `track_id` to merge into a generation request.

        `{"webhook": "<webhook_url>/<track_id>/<token>", "track_id": track_id}`: the token
        (an HMAC of `track_id` under `webhook_secret`) makes the URL its own credential.
        `track_id` is made (22 random URL-safe characters) when not given; one you give
        must be 1-64 letters, digits, `-` or `_`. The URL is a secret, redacted everywhere.
        """
        return self._receiver().fields(track_id)

    def receive(
        self, path: str, body: bytes | str, headers: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        """Check one delivery and hand it to the waits on its id; return it.

        For a view of any web framework: `path` is the request path (`request.url.path`),
        `body` the raw bytes (or text), `headers` the request's headers. Checked in order:
        the path's token, the size (at most 64 KiB), the JSON, the body's `track_id`
        against the path's. Raises `InvalidWebhookError`, whose `status_code` is the HTTP
        answer to give (404, 413, 400, 415). A duplicate (same id and status) is returned
        with `duplicate=True` and wakes nothing. Never blocks, never makes a request.
        """
        return self._receiver().receive(path, body, headers)

    def asgi_app(self) -> WebhookASGIApp:
        """An ASGI app receiving deliveries: mount it at `webhook_url`'s path.

        `app.mount("/hooks/modelslab", client.webhooks.asgi_app())` in FastAPI or
        Starlette, or serve it with uvicorn. It answers a valid delivery 200 at once, a
        URL it did not make 404 (before reading the body), a body over 64 KiB 413, one
        that is not a delivery 400, anything but a POST 405.
        """
        return WebhookASGIApp(self._receiver())

    def wsgi_app(self) -> WebhookWSGIApp:
        """A WSGI app receiving deliveries (Flask, Django, any WSGI server); see `asgi_app`.

        Mount it at `webhook_url`'s path, e.g. with werkzeug's `DispatcherMiddleware`.
        A body without a `Content-Length` (and no server end marker) is refused 411.
        """
        return WebhookWSGIApp(self._receiver())

    def on_delivery(self, callback: DeliveryCallback) -> Callable[[], None]:
        """Call `callback(delivery)` for each new delivery; return a function that stops it.

        It runs on the receiver's thread before it answers: keep it quick. An exception it
        raises is logged; the delivery is kept all the same. Duplicates are not passed.
        """
        return self._hub().on_delivery(callback)


class AsyncWebhooks(_Webhooks):
    """`AsyncModelsLab.webhooks`: fields for generation requests, the receiver, deliveries.

    Configured by `webhook_url=` and `webhook_secret=` (or their environment variables);
    then every `wait` also ends when a delivery for its id arrives. See docs/webhooks.md.
    """

    def deliveries(self, *, backlog: bool = False) -> DeliveryStream:
        """`async for delivery in client.webhooks.deliveries():` each new delivery once.

        The deliveries received from its creation on (with `backlog=True`, first those
        still kept: up to 10,000, 15 minutes old at most); up to 10,000 unread are
        buffered, the oldest dropped beyond. Ends when the client closes, or on `aclose()`.
        A delivery is unconfirmed: fetch before acting on it if the URL may have leaked.
        """
        return self._hub().stream(backlog=backlog)

    def close(self) -> None:
        """End the iterators of this client's deliveries (the client is closing)."""
        if self._receiver_or_none is not None:
            self._receiver_or_none.hub.close()


class Webhooks(_Webhooks):
    """`ModelsLab.webhooks`, the blocking client's: as `AsyncWebhooks`, iterated blocking."""

    def deliveries(self, *, backlog: bool = False) -> DeliveryIterator:
        """`for delivery in client.webhooks.deliveries():` each new delivery once, blocking.

        See `AsyncWebhooks.deliveries`; ends when the client closes, or on `close()`.
        """
        return self._hub().iterator(backlog=backlog)
