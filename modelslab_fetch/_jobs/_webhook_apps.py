"""The webhook receiver as an ASGI app (FastAPI, Starlette, uvicorn) and a WSGI app (Flask).

The ASGI app refuses a forged URL and an announced oversize body before reading a byte,
so no sender can make it hold more than `MAX_DELIVERY_BYTES` of one request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._errors import InvalidWebhookError
from ._webhooks import MAX_DELIVERY_BYTES, WebhookReceiver, refused

__all__ = ["WebhookASGIApp", "WebhookWSGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


class WebhookASGIApp:
    """An ASGI app receiving ModelsLab's deliveries; see `AsyncWebhooks.asgi_app`."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return "WebhookASGIApp()"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection: lifespan events, or one HTTP request."""
        kind = scope["type"]
        if kind == "lifespan":  # served on its own by uvicorn: nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        await _answer(send, await self._status(scope, receive))

    async def _status(self, scope: Scope, receive: Receive) -> int:
        if scope.get("method") != "POST":
            return 405
        receiver = self._receiver
        try:
            track_id = receiver.track_id_of(scope.get("path", ""))
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope.get("headers", ())
            }
            announced = headers.get("content-length", "")
            if announced.isdigit() and int(announced) > MAX_DELIVERY_BYTES:
                return 413
            body = await _read_body(receive)
            receiver.accept(track_id, body, headers)
        except InvalidWebhookError as exc:
            return exc.status_code
        return 200


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise refused(400)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_DELIVERY_BYTES:
            raise refused(413)
        parts.append(chunk)
        more = message.get("more_body", False)
    return b"".join(parts)


async def _answer(send: Send, status: int) -> None:
    headers = [(b"content-length", b"0")]
    if status == 405:
        headers.append((b"allow", b"POST"))
    if status >= 400:
        # The body of a refused request may be unread: this connection is not reused.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


StartResponse = Callable[[str, list[tuple[str, str]]], object]


class WebhookWSGIApp:
    """A WSGI app receiving ModelsLab's deliveries; see `AsyncWebhooks.wsgi_app`."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return "WebhookWSGIApp()"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one WSGI request."""
        status = self._status(environ)
        headers = [("Content-Length", "0")]
        if status == 405:
            headers.append(("Allow", "POST"))
        start_response(f"{status} {_REASONS[status]}", headers)
        return [b""]

    def _status(self, environ: dict[str, Any]) -> int:
        if environ.get("REQUEST_METHOD") != "POST":
            return 405
        receiver = self._receiver
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        try:
            track_id = receiver.track_id_of(path)
            announced = str(environ.get("CONTENT_LENGTH") or "").strip()
            if announced.isdigit():
                if int(announced) > MAX_DELIVERY_BYTES:
                    return 413
                body = environ["wsgi.input"].read(int(announced))
            elif environ.get("wsgi.input_terminated"):
                body = environ["wsgi.input"].read(MAX_DELIVERY_BYTES + 1)
            else:  # no length and no end marker: reading could block on the socket
                return 411
            headers = {"content-encoding": str(environ.get("HTTP_CONTENT_ENCODING", ""))}
            receiver.accept(track_id, body, headers)
        except InvalidWebhookError as exc:
            return exc.status_code
        return 200
