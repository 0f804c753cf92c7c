"""The `modelslab_webhooks` fixture: a real receiver on loopback that the simulator delivers to.

Over real sockets: the simulator (uvicorn, one thread) POSTs each job's end to the
receiver (uvicorn, another thread), whose client's wait ends on it. The async cases run
on asyncio and on trio. A wait that ends on a delivery makes one fetch (the confirming
one); a job of 1 s found by polling alone takes at least two (the first poll comes at
the early edge of the eta's band).
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from modelslab_fetch import (
    WEBHOOK_SECRET_ENV,
    WEBHOOK_URL_ENV,
    AsyncModelsLab,
    ClientClosedError,
    ConfigurationError,
    ModelsLab,
)
from modelslab_fetch.testing import (
    WEBHOOK_PATH,
    Faults,
    SimulatorServer,
    WebhookServer,
    webhook_server,
)
from tests.backends import both_backends

anyio_backend = both_backends

pytestmark = pytest.mark.integration


def test_the_fixture_client_ends_its_wait_on_the_delivery(
    modelslab_server: SimulatorServer, modelslab_webhooks: WebhookServer
) -> None:
    client = modelslab_webhooks.client
    simulator = modelslab_server.simulator
    fields = client.webhooks.fields()
    response = simulator.queue_response(
        "images", ready_in=1.0, webhook=fields["webhook"], track_id=fields["track_id"]
    )
    started = time.monotonic()
    assert client.wait_for(response, timeout=30).succeeded
    # Ready at 1 s, delivered 20-200 ms later, confirmed by one fetch.
    assert time.monotonic() - started < 1.0 + 0.2 + 0.5
    assert simulator.polls() == {str(response["id"]): 1}
    assert modelslab_webhooks.answered == {200: 1}


def test_the_environment_names_the_receiver(
    modelslab_webhooks: WebhookServer, modelslab_server: SimulatorServer
) -> None:
    assert os.environ[WEBHOOK_URL_ENV] == modelslab_webhooks.url
    assert os.environ[WEBHOOK_SECRET_ENV] == modelslab_webhooks.secret
    assert modelslab_webhooks.url.startswith("http://127.0.0.1:")
    assert modelslab_webhooks.url.endswith(WEBHOOK_PATH)
    assert len(modelslab_webhooks.secret) >= 32
    assert modelslab_webhooks.secret not in repr(modelslab_webhooks)
    # A client built from the environment alone is configured for the receiver.
    with ModelsLab() as client:
        assert client.webhooks.configured
        assert client.webhooks.fields("a")["webhook"].startswith(modelslab_webhooks.url + "/a/")


async def test_a_client_of_the_test_receives_its_deliveries(
    modelslab_server: SimulatorServer, modelslab_webhooks: WebhookServer
) -> None:
    simulator = modelslab_server.simulator
    async with AsyncModelsLab() as client:  # from the environment the fixtures set
        modelslab_webhooks.receive_for(client)
        fields = [client.webhooks.fields() for _ in range(5)]
        responses = [
            simulator.queue_response(
                "images", ready_in=1.0, webhook=one["webhook"], track_id=one["track_id"]
            )
            for one in fields
        ]
        async with client.wait_for_many(responses, timeout=30) as batch:
            outcomes = [outcome async for outcome in batch]
    assert all(outcome.ok for outcome in outcomes)
    assert sorted(simulator.polls().values()) == [1] * 5
    assert modelslab_webhooks.answered == {200: 5}


def test_a_lost_delivery_is_found_by_polling(
    modelslab_server: SimulatorServer, modelslab_webhooks: WebhookServer
) -> None:
    modelslab_server.faults = Faults(webhook_drop_rate=1.0)
    client = modelslab_webhooks.client
    fields = client.webhooks.fields()
    job = modelslab_server.simulator.queue(
        ready_in=0.3, webhook=fields["webhook"], track_id=fields["track_id"]
    )
    assert client.images.wait(job, timeout=30).succeeded
    assert modelslab_server.webhook_stats.dropped == 1
    assert modelslab_webhooks.answered == {}


def test_deliveries_before_any_client_are_refused_as_by_a_receiver_down(
    modelslab_webhooks: WebhookServer,
) -> None:
    answer = httpx.post(modelslab_webhooks.url + "/cat-1/token", json={"track_id": "cat-1"})
    assert answer.status_code == 503
    client = modelslab_webhooks.client  # from now on, deliveries reach it
    answer = httpx.post(modelslab_webhooks.url + "/cat-1/forged", json={"track_id": "cat-1"})
    assert answer.status_code == 404  # the client's own receiver refuses a forged URL
    fields = client.webhooks.fields("cat-1")
    body = {"status": "success", "id": 1, "track_id": "cat-1"}
    assert httpx.post(fields["webhook"], json=body).status_code == 200
    assert modelslab_webhooks.answered == {503: 1, 404: 1, 200: 1}


def test_receive_for_takes_a_client_with_webhooks_only(
    modelslab_webhooks: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_URL_ENV)
    monkeypatch.delenv(WEBHOOK_SECRET_ENV)
    with pytest.raises(TypeError, match="AsyncModelsLab or a ModelsLab"):
        modelslab_webhooks.receive_for("a client")  # type: ignore[arg-type]
    with ModelsLab(api_key="k") as plain, pytest.raises(ConfigurationError, match="webhook_url"):
        modelslab_webhooks.receive_for(plain)


def test_webhook_server_stops_and_closes_its_client_with_the_block() -> None:
    with webhook_server(client_options={"api_key": "k"}) as hooks:
        client = hooks.client
        assert client is hooks.client  # made once
        url = hooks.url
        assert httpx.post(url + "/a/b", content=b"{}").status_code == 404
    with pytest.raises(ClientClosedError):
        client.images.fetch("1")
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/a/b", content=b"{}")
