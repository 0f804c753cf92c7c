"""Receiving ModelsLab's webhooks: the URL to hand out, and the checks of each delivery.

ModelsLab signs nothing: the URL's HMAC token is the credential. `receive()` checks the
token (constant time), the size, the JSON, then that the body's `track_id` is the path's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import InvalidWebhookError
from .._http._answers import _json_object
from .._results import FetchResult
from .._webhook_config import WebhookSettings, checked_track_id, new_track_id
from ._deliveries import DeliveryHub, WebhookDelivery

__all__ = ["MAX_DELIVERY_BYTES", "WebhookReceiver", "refused"]

MAX_DELIVERY_BYTES = 64 * 1024
"""The largest delivery body accepted (64 KiB; ModelsLab's are 1-3 kB); larger is 413."""

# The messages a sender sees: the HTTP answer and nothing about which check failed.
_MESSAGES = {
    400: "webhook delivery refused: the body is not a ModelsLab delivery (400)",
    404: "webhook delivery refused: no such webhook (404)",
    405: "webhook delivery refused: only POST is accepted (405)",
    411: "webhook delivery refused: the body's length must be given (411)",
    413: f"webhook delivery refused: larger than {MAX_DELIVERY_BYTES} bytes (413)",
    415: "webhook delivery refused: encoded bodies are not accepted (415)",
}


def refused(status_code: int) -> InvalidWebhookError:
    """The error for a delivery answered `status_code`."""
    return InvalidWebhookError(_MESSAGES[status_code], status_code=status_code)


class WebhookReceiver:
    """Makes webhook fields and checks deliveries, for one client's settings and hub."""

    def __init__(
        self, settings: WebhookSettings, hub: DeliveryHub, *, clean: Callable[[Any], Any]
    ) -> None:
        self.settings = settings
        self.hub = hub
        self._clean = clean  # the client's redaction: the key and the webhook URL
        self.secret_redactor: object = None  # kept alive: the log filter holds it weakly
        self.share: Callable[[WebhookDelivery], None] | None = None
        """Called with each new delivery accepted here (redis_url: publish to the fleet)."""

    def __repr__(self) -> str:
        return f"WebhookReceiver(trust={self.settings.trust})"

    def fields(self, track_id: str | None = None) -> dict[str, str]:
        """`{"webhook": ..., "track_id": ...}` to merge into a generation request."""
        chosen = new_track_id() if track_id is None else checked_track_id(track_id)
        return {"webhook": self.settings.capability_url(chosen), "track_id": chosen}

    def track_id_of(self, path: str) -> str:
        """The `track_id` a request path proves; `InvalidWebhookError` (404) if none."""
        track_id = self.settings.track_id_of(path)
        if track_id is None:
            raise refused(404)
        return track_id

    def receive(
        self, path: str, body: bytes | str, headers: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        """Check one delivery and hand it to the hub; see `AsyncWebhooks.receive`."""
        return self.accept(self.track_id_of(path), body, headers)

    def accept(
        self, track_id: str, body: bytes | str, headers: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        """Check a delivery whose path proved `track_id`; hand it to the hub."""
        if isinstance(body, str):  # a framework's decoded text: the bytes it came from
            body = body.encode("utf-8", "surrogatepass")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        if len(body) > MAX_DELIVERY_BYTES:
            raise refused(413)
        if _encoded(headers):
            raise refused(415)
        content = bytes(body)
        value, _problem = _json_object(content)
        if value is None or _track_id_in(value) != track_id:
            # Another track_id's body: 404, as for an unknown URL (a leaked URL speaks for one).
            raise refused(400 if value is None else 404)
        result = _result_of(self._clean(value))
        if result is None:
            raise refused(400)
        delivery = WebhookDelivery.received_now(track_id, result, len(content))
        if self.hub.offer(delivery):
            if self.share is not None:
                self.share(delivery)
            return delivery
        return dataclasses.replace(delivery, duplicate=True)


def _encoded(headers: Mapping[str, str] | None) -> bool:
    if not headers:
        return False
    for name, value in headers.items():
        if name.lower() == "content-encoding":
            return value.strip().lower() not in ("", "identity")
    return False


def _track_id_in(body: dict[str, Any]) -> str | None:
    value = body.get("track_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # echoed as a number, when it was all digits
    return value.strip() if isinstance(value, str) else None


def _result_of(body: dict[str, Any]) -> FetchResult | None:
    try:
        return FetchResult.from_body(body, request_id="")
    except (ValueError, RecursionError):
        return None
