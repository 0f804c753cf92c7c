"""The blocking client against the simulator with faults on, over real sockets.

What broke it once: its coroutines resumed on whichever thread called next, and
tenacity's per-thread retry statistics were gone after a 5xx (`KeyError: 'idle_for'`).
So each of its calls runs here through 5xx, cut bodies, edge pages, queue-limit 429s and
spam-filter answers, on several seeds, and every outcome must be a success or the
failure the simulator chose; and every step of a poll must run on one thread.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from modelslab_fetch import (
    EventLoopClock,
    GenerationFailedError,
    ModelsLab,
    PollPolicy,
    PollUpdate,
)
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server

pytestmark = pytest.mark.integration

# Two seeds in the default run, a third with the soaks (nox -s soak, run by CI too).
SEEDS = [1, 2, pytest.param(3, marks=pytest.mark.soak)]
KEY = "sk-under-faults"

FAULTS = Faults(
    error_rate=0.12,
    edge_page_rate=0.04,
    truncate_rate=0.04,
    queue_limit_rate=0.04,
    queue_limit_wait=0.3,
    spam_filter_rate=0.02,
)


class Jobs:
    """Queued jobs, some chosen by the simulator to fail."""

    def __init__(self, simulator: Simulator, count: int, seed: int) -> None:
        draw = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.failing: set[str] = set()
        self.ids: list[str] = []
        for n in range(count):
            fails = n % 7 == 3
            job = simulator.queue(
                ready_in=draw.uniform(0.05, 0.6), final="failed" if fails else "success"
            )
            self.ids.append(job)
            if fails:
                self.failing.add(job)

    def assert_as_chosen(self, request_id: str, error: BaseException | None) -> None:
        """A success, or the generation failure the simulator chose, and nothing else."""
        if request_id in self.failing:
            assert isinstance(error, GenerationFailedError), (request_id, repr(error))
        else:
            assert error is None, (request_id, repr(error))


@contextmanager
def faulty_simulator(seed: int) -> Iterator[tuple[Simulator, str]]:
    simulator = Simulator(api_key=KEY, seed=seed)
    with simulator_server(SimulatorApp(simulator, faults=FAULTS, seed=seed)) as base_url:
        yield simulator, base_url


def blocking_client(base_url: str) -> ModelsLab:
    # Enough retries that fetch() outlives the fault rates above; wait() polls through.
    return ModelsLab(api_key=KEY, base_url=base_url, max_retries=8)


@pytest.mark.parametrize("seed", SEEDS)
def test_wait_many_gives_only_the_outcomes_the_simulator_chose(seed: int) -> None:
    with faulty_simulator(seed) as (simulator, base_url), blocking_client(base_url) as client:
        jobs = Jobs(simulator, 40, seed)
        seen = []
        for outcome in client.images.wait_many(jobs.ids, timeout=60):
            jobs.assert_as_chosen(outcome.request_id, outcome.error)
            seen.append(outcome.request_id)
            time.sleep(0.02)  # a consumer that works between reads, as a real one does
        assert sorted(seen) == sorted(jobs.ids)


@pytest.mark.parametrize("seed", SEEDS)
def test_fetch_many_answers_every_id_through_the_faults(seed: int) -> None:
    with faulty_simulator(seed) as (simulator, base_url), blocking_client(base_url) as client:
        jobs = Jobs(simulator, 40, seed)
        outcomes = list(client.images.fetch_many(jobs.ids))
        assert sorted(o.request_id for o in outcomes) == sorted(jobs.ids)
        assert [o.error for o in outcomes if not o.ok] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_wait_from_eight_threads_gives_only_the_outcomes_the_simulator_chose(seed: int) -> None:
    with faulty_simulator(seed) as (simulator, base_url), blocking_client(base_url) as client:
        jobs = Jobs(simulator, 24, seed)

        def wait(request_id: str) -> tuple[str, BaseException | None]:
            try:
                client.images.wait(request_id, timeout=60)
            except Exception as exc:
                return request_id, exc
            return request_id, None

        with ThreadPoolExecutor(max_workers=8) as pool:
            for request_id, error in pool.map(wait, jobs.ids):
                jobs.assert_as_chosen(request_id, error)


class ThreadNotingClock(EventLoopClock):
    """The event loop's clock, noting the thread of every step that reads it or sleeps."""

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def now(self) -> float:
        self.threads.add(threading.get_ident())
        return super().now()

    async def sleep(self, seconds: float) -> None:
        self.threads.add(threading.get_ident())
        await super().sleep(seconds)
        self.threads.add(threading.get_ident())  # where it woke up


QUICK = PollPolicy(backoff_initial=0.1, backoff_max=0.4)  # faults polled through fast


def test_every_step_of_a_poll_retried_through_faults_runs_on_one_thread() -> None:
    # Faults on every other answer, polls from two threads: a coroutine resumed on
    # another thread would show up here as a second thread.
    simulator = Simulator(api_key=KEY, seed=7)
    app = SimulatorApp(simulator, faults=Faults(error_rate=0.3, edge_page_rate=0.1), seed=7)
    clock = ThreadNotingClock()
    updates: set[int] = set()
    errors_seen: list[BaseException | None] = []

    def note(update: PollUpdate) -> None:
        updates.add(threading.get_ident())
        errors_seen.append(update.error)

    with (
        simulator_server(app) as base_url,
        ModelsLab(api_key=KEY, base_url=base_url, clock=clock, poll_policy=QUICK) as client,
    ):
        jobs = [simulator.queue(ready_in=0.3) for _ in range(6)]

        def wait(request_id: str) -> None:
            client.images.wait(request_id, timeout=60, on_update=note)

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(wait, jobs))
        [loop_thread] = [t for t in threading.enumerate() if t.name == "modelslab-fetch"]
    assert any(error is not None for error in errors_seen)  # polls were retried through faults
    assert clock.threads == {loop_thread.ident}
    assert updates == {loop_thread.ident}
