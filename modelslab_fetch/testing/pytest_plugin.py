"""pytest fixtures to test your own code against the simulator (registered automatically).

`modelslab_simulator` is a fresh `Simulator`; queue jobs on it. `modelslab_server`
serves it on a free loopback port and points `MODELSLAB_BASE_URL` and
`MODELSLAB_API_KEY` at it for the test, so code that builds its client from the
environment talks to the simulator unchanged::

    def test_my_collector(modelslab_server):
        job = modelslab_server.simulator.queue(ready_in=0.5)
        assert my_code.collect(job) == ["http://127.0.0.1:.../generations/...-0.png"]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .._config import API_KEY_ENV, BASE_URL_ENV
from ._asgi import SimulatorApp
from ._server import simulator_server
from ._simulator import Simulator

__all__ = ["SimulatorServer", "modelslab_server", "modelslab_simulator"]

SIMULATOR_KEY = "simulator-test-key"


@dataclass(frozen=True)
class SimulatorServer:
    """A simulator served on loopback for one test."""

    base_url: str
    """The API root, e.g. `http://127.0.0.1:54321/api` (also in `MODELSLAB_BASE_URL`)."""
    api_key: str
    """The key the simulator accepts (also in `MODELSLAB_API_KEY`)."""
    simulator: Simulator
    """The queue behind it: `queue()` jobs, read `jobs` and `polls()`."""
    app: SimulatorApp
    """The ASGI app, whose `faults` can be inspected."""


@pytest.fixture
def modelslab_simulator() -> Simulator:
    """A fresh simulator that accepts only `SIMULATOR_KEY`, seeded for repeatable runs."""
    return Simulator(api_key=SIMULATOR_KEY, seed=0)


@pytest.fixture
def modelslab_server(
    modelslab_simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SimulatorServer]:
    """The simulator on a free loopback port, with the environment pointing at it."""
    app = SimulatorApp(modelslab_simulator)
    with simulator_server(app) as base_url:
        monkeypatch.setenv(BASE_URL_ENV, base_url)
        monkeypatch.setenv(API_KEY_ENV, SIMULATOR_KEY)
        yield SimulatorServer(base_url, SIMULATOR_KEY, modelslab_simulator, app)
