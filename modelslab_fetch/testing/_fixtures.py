"""What the pytest fixtures build: a simulator, and that simulator served on loopback."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .. import API_KEY_ENV, BASE_URL_ENV
from ._asgi import SimulatorApp
from ._server import SimulatorServer, simulator_server
from ._simulator import Simulator

__all__ = ["SIMULATOR_KEY", "SimulatorServer", "new_simulator", "serve_for_test"]

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
