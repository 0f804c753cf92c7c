"""pytest fixtures to test your own code against the ModelsLab simulator (auto-registered).

`modelslab_simulator` is a fresh `modelslab_fetch.testing.Simulator`; queue jobs on it.
`modelslab_server` serves it on a free loopback port (a `modelslab_fetch.testing.
SimulatorServer`, whose `faults` you may set) and points `MODELSLAB_BASE_URL` and
`MODELSLAB_API_KEY` at it for the test, so code that builds its client from the
environment talks to the simulator unchanged::

    def test_my_collector(modelslab_server):
        job = modelslab_server.simulator.queue(ready_in=0.5)
        assert my_code.collect(job)[0].endswith(f"/generations/{job}-0.png")

`modelslab_webhooks` adds a webhook receiver on loopback (a `modelslab_fetch.testing.
WebhookServer`) and points `MODELSLAB_WEBHOOK_URL` and `MODELSLAB_WEBHOOK_SECRET` at it;
its `client` is configured for it, so jobs queued with `client.webhooks.fields()` are
delivered to that client's waits::

    def test_push(modelslab_server, modelslab_webhooks):
        client = modelslab_webhooks.client
        fields = client.webhooks.fields()
        response = modelslab_server.simulator.queue_response(**fields)
        assert client.wait_for(response).succeeded

This module imports modelslab_fetch only when a fixture is used: pytest loads plugins
before coverage tools start, and an early import would hide the package from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modelslab_fetch.testing import Simulator, SimulatorServer, WebhookServer


@pytest.fixture
def modelslab_simulator() -> Simulator:
    """A fresh simulator that accepts only the key `modelslab_server` puts in the environment."""
    from modelslab_fetch.testing._fixtures import new_simulator  # noqa: PLC0415 - see above

    return new_simulator()


@pytest.fixture
def modelslab_server(
    modelslab_simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SimulatorServer]:
    """A `SimulatorServer`: the simulator on a free loopback port, the environment at it.

    Set `modelslab_server.faults = Faults(...)` to make it misbehave for the test.
    """
    from modelslab_fetch.testing._fixtures import serve_for_test  # noqa: PLC0415 - see above

    yield from serve_for_test(modelslab_simulator, monkeypatch)


@pytest.fixture
def modelslab_webhooks(
    modelslab_server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebhookServer]:
    """A `WebhookServer`: a receiver on loopback that `modelslab_server`'s jobs deliver to.

    Its `client` (a `ModelsLab`, made on first use) receives the deliveries; or give it
    your own with `modelslab_webhooks.receive_for(client)`. The environment names its URL
    and secret (`MODELSLAB_WEBHOOK_URL`, `MODELSLAB_WEBHOOK_SECRET`).
    """
    from modelslab_fetch.testing._fixtures import serve_webhooks_for_test  # noqa: PLC0415

    yield from serve_webhooks_for_test(modelslab_server, monkeypatch)
