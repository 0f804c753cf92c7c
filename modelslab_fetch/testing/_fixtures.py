"""What the pytest fixtures build: a simulator, served on loopback, and a webhook receiver."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .. import API_KEY_ENV, BASE_URL_ENV, WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV
from ._asgi import SimulatorApp
from ._receiver import WebhookServer, webhook_server
from ._server import SimulatorServer, simulator_server
from ._simulator import Simulator

__all__ = [
    "SIMULATOR_KEY",
    "SimulatorServer",
    "WebhookServer",
    "new_simulator",
    "serve_for_test",
    "serve_webhooks_for_test",
]

SIMULATOR_KEY = "simulator-test-key"


def new_simulator() -> Simulator:
    """A fresh simulator that accepts only `SIMULATOR_KEY`, seeded for repeatable runs."""
    return Simulator(api_key=SIMULATOR_KEY, seed=0)


def serve_for_test(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> Generator[SimulatorServer, None, None]:
    """Serve `simulator` on a free loopback port, with the environment pointing at it."""
    app = SimulatorApp(simulator)
    with simulator_server(app) as base_url:
        monkeypatch.setenv(BASE_URL_ENV, base_url)
        monkeypatch.setenv(API_KEY_ENV, SIMULATOR_KEY)
        yield SimulatorServer(base_url, SIMULATOR_KEY, simulator, app)


def serve_webhooks_for_test(
    server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Generator[WebhookServer, None, None]:
    """A webhook receiver on loopback for `server`'s simulator, the environment at it.

    `MODELSLAB_WEBHOOK_URL` and `MODELSLAB_WEBHOOK_SECRET` name it, so a client built
    from the environment makes webhook fields it accepts.
    """
    options = {"base_url": server.base_url, "api_key": server.api_key}
    with webhook_server(client_options=options) as hooks:
        monkeypatch.setenv(WEBHOOK_URL_ENV, hooks.url)
        monkeypatch.setenv(WEBHOOK_SECRET_ENV, hooks.secret)
        yield hooks
