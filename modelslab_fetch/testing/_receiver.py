"""A webhook receiver on a real loopback socket, for tests and demos of push and poll.

`webhook_server()` serves, under uvicorn in a thread, the receiver of whichever client it
is given (`client.webhooks.asgi_app()`): the client's own code checks every delivery, as
it would behind a public URL. What it adds is a URL fixed before any client exists, so
a client can be built with `webhook_url=` pointing at it (and one built later, or by the
code under test, from the environment): every client given the same secret makes tokens
this receiver's client accepts.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import AsyncModelsLab, ModelsLab
from ._server import free_port, serve_in_thread

if TYPE_CHECKING:
    from ._asgi import Receive, Scope, Send

__all__ = ["WEBHOOK_PATH", "WebhookServer", "webhook_server"]

WEBHOOK_PATH = "/hooks/modelslab"
"""Where `webhook_server()` mounts the receiver: the path of its `url`."""


class WebhookServer:
    """A webhook receiver on loopback: what `webhook_server()` and `modelslab_webhooks` give.

    Deliveries POSTed below `url` go to the receiver (`webhooks.asgi_app()`) of the
    client last given to `receive_for`, or, if none was, of `client`, made on first
    use. Until there is one, they are answered 503, as by a receiver that is down:
    the delivery is lost, and a wait finds its job by polling.

    Attributes:
        url: The `webhook_url` to configure clients with, e.g.
            `http://127.0.0.1:54321/hooks/modelslab` (plain http: loopback only).
        secret: The `webhook_secret` to configure them with (random, 43 characters).
        answered: How many deliveries were answered with each HTTP status (200 for an
            accepted delivery, a duplicate too; 404 for a URL not made with `secret`).

    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.answered: Counter[int] = Counter()
        self._client_options = dict(client_options or {})
        self._lock = threading.Lock()
        self._app: Any = None
        self._client: ModelsLab | None = None

    def __repr__(self) -> str:
        # The URL alone carries no token (tokens are in the paths below it); the secret
        # never appears.
        return f"WebhookServer({self.url!r}, answered={dict(self.answered)})"

    @property
    def client_options(self) -> dict[str, Any]:
        """`webhook_url` and `webhook_secret` (and the fixture's `base_url`, `api_key`).

        `AsyncModelsLab(**hooks.client_options)` makes a client whose deliveries come
        here, once given to `receive_for`.
        """
        return {**self._client_options, "webhook_url": self.url, "webhook_secret": self.secret}

    @property
    def client(self) -> ModelsLab:
        """A blocking client configured for this receiver, made on first use, closed with it.

        It receives the deliveries unless `receive_for` was given another client first.
        """
        with self._lock:
            if self._client is None:
                self._client = ModelsLab(**self.client_options)
                if self._app is None:
                    self._app = self._client.webhooks.asgi_app()
            return self._client

    def receive_for(self, client: AsyncModelsLab | ModelsLab) -> None:
        """Hand every delivery from now on to `client`'s receiver (its waits end on them).

        `client` must be configured with `webhook_url=url` and `webhook_secret=secret`
        (`client_options`, or the environment the fixture sets): a client with another
        secret would refuse every delivery (404).
        """
        if not isinstance(client, AsyncModelsLab | ModelsLab):
            raise TypeError(
                f"receive_for takes an AsyncModelsLab or a ModelsLab, not {type(client).__name__}"
            )
        app = client.webhooks.asgi_app()  # ConfigurationError if it has no webhooks
        with self._lock:
            self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass one ASGI connection to the receiving client's app; count its answer."""
        if scope["type"] != "http":  # no lifespan (served with it off), no websockets
            return
        app = self._app

        async def counted(message: Any) -> None:
            # Counted before the answer leaves: a test that has its answer sees the count.
            if message.get("type") == "http.response.start":
                with self._lock:
                    self.answered[int(message["status"])] += 1
            await send(message)

        if app is None:
            await counted({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await app(scope, receive, counted)

    def close(self) -> None:
        """Close `client`, if it was made."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


@contextmanager
def webhook_server(
    *,
    host: str = "127.0.0.1",
    secret: str | None = None,
    client_options: dict[str, Any] | None = None,
) -> Iterator[WebhookServer]:
    """Serve a webhook receiver on a free port of `host` (loopback); yield its `WebhookServer`.

    Give it a client with `receive_for(client)`, or use its `client`; point the
    simulator's jobs at it with `client.webhooks.fields()`. `client_options` are passed
    on to the `client` it makes (e.g. `base_url=`, `api_key=`). The server stops, and
    `client` closes, when the block is left::

        with webhook_server() as hooks:
            async with AsyncModelsLab(**hooks.client_options) as client:
                hooks.receive_for(client)
                response = simulator.queue_response(**client.webhooks.fields())
                result = await client.wait_for(response)
    """
    port = free_port(host)
    url = f"http://{host}:{port}{WEBHOOK_PATH}"
    hooks = WebhookServer(url, secret or secrets.token_urlsafe(32), client_options=client_options)
    try:
        with serve_in_thread(hooks, host, port, name="modelslab-webhooks"):
            yield hooks
    finally:
        hooks.close()
