"""The SDK through every answer the simulator gives the way ModelsLab's docs describe.

Each fault is the simulator's (its wire form is checked in test_simulator.py); here the
SDK must read it: rate limits waited out and polled through, unknown ids as
`RequestNotFoundError`, account refusals stopping a batch, odd shapes read as results.
"""

from __future__ import annotations

import pytest

from modelslab_fetch import (
    AuthenticationError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
)
from modelslab_fetch.testing import (
    Faults,
    QueueLimitWait,
    Simulator,
    SimulatorApp,
    in_process_client,
)


async def test_an_unknown_id_is_request_not_found_named_for_the_id_asked() -> None:
    app = SimulatorApp(Simulator())
    async with in_process_client(app) as client:
        with pytest.raises(RequestNotFoundError) as fetched:
            await client.images.fetch("424242")
        with pytest.raises(RequestNotFoundError) as waited:
            await client.images.wait("424242", timeout=5)
    assert fetched.value.request_id == "424242"
    assert waited.value.request_id == "424242"
    assert app.simulator.jobs == {}


@pytest.mark.parametrize("wait_in", ["body", "reset_header"])
async def test_queue_limits_are_polled_through(wait_in: QueueLimitWait) -> None:
    simulator = Simulator(seed=3)
    # An X-RateLimit-Reset is a whole epoch second: up to a second per rate limit.
    faults = Faults(queue_limit_rate=0.3, queue_limit_wait=0.05, queue_limit_wait_in=wait_in)
    app = SimulatorApp(simulator, faults=faults, seed=3)
    ids = simulator.queue_many(6, ready_in=(0.05, 0.3))
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["queue limit"] > 0
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if not o.ok]


async def test_the_spam_filter_is_polled_through_and_never_a_failed_job() -> None:
    simulator = Simulator(seed=4)
    app = SimulatorApp(simulator, faults=Faults(spam_filter_rate=0.5, spam_filter_wait=0), seed=4)
    ids = simulator.queue_many(20, ready_in=(0.05, 0.3))
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["spam filter"] > 0
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if not o.ok]


async def test_fetch_raises_the_queue_limit_once_its_retries_are_spent() -> None:
    app = SimulatorApp(Simulator(), faults=Faults(queue_limit_rate=1.0, queue_limit_wait=0.01))
    job = app.simulator.queue()
    async with in_process_client(app, max_retries=1) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.images.fetch(job)
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.status_code == 429


@pytest.mark.parametrize(
    ("account_error", "error_class"),
    [
        ("no_credits", InsufficientCreditsError),
        ("plan", PermissionDeniedError),
        ("bad_key", AuthenticationError),
        ("bad_key_legacy", AuthenticationError),
    ],
)
async def test_an_account_refusal_stops_the_batch(
    account_error: str, error_class: type[Exception]
) -> None:
    simulator = Simulator()
    app = SimulatorApp(simulator, faults=Faults(account_error=account_error))  # type: ignore[arg-type]
    ids = simulator.queue_many(300, ready_in=(0.0, 0.1))
    async with in_process_client(app, max_concurrency=8) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert len(outcomes) == 300
    assert all(type(outcome.error) is error_class for outcome in outcomes)
    assert sum(app.faults.kinds.values()) <= 8  # requests sent: at most max_concurrency


async def test_odd_shapes_are_read_as_results() -> None:
    simulator = Simulator(seed=5)
    app = SimulatorApp(simulator, faults=Faults(odd_shape_rate=1.0), seed=5)
    ids = simulator.queue_many(30, ready_in=(0.0, 0.2), failure_rate=0.2)
    async with in_process_client(app) as client:
        outcomes = [outcome async for outcome in client.images.wait_many(ids, timeout=30)]
    assert app.faults.kinds["odd shape"] > 0
    for outcome in outcomes:
        if outcome.result is not None:
            assert outcome.result.output
            assert all(url.startswith("http") for url in outcome.result.output)
            assert outcome.result.id == outcome.request_id
        else:
            assert isinstance(outcome.error, ModelsLabError)
            assert outcome.error.request_id == outcome.request_id
            assert "Request not found" not in str(outcome.error)
