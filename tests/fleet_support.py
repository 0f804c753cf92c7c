"""Helpers of the fleet tests: a scripted API (respx) that tells workers apart, clients.

Each client of a test is a "worker" named by a header it sends (`x-worker`); the API
records every fetch (when, which worker, which id), so a test can count what each worker
sent, and when. Jobs become ready at a time on the real clock: the fleet is about real
time across clients and processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, ModelsLab, PollPolicy
from tests.conftest import API_KEY, BASE_URL

SECRET = "fleet-tests-webhook-secret-0123456789abcdef"
HOOK = "https://hooks.example.com/modelslab"
# Polls on the fixed formula, at the eta: schedules read as plain numbers.
QUICK = PollPolicy(eta_factor=1.0, eta_offset=0.0, min_interval=0.2)


@dataclass
class Fetch:
    at: float
    worker: str
    request_id: str


@dataclass
class FleetAPI:
    """Jobs by id, ready at a monotonic time; every fetch recorded."""

    ready_at: dict[str, float] = field(default_factory=dict)
    fetches: list[Fetch] = field(default_factory=list)
    eta: float = 1.0
    stated_eta: float | None = None
    """The eta every processing answer states, whatever the truth (None: the truth)."""
    rate_limit_next: dict[str, float] = field(default_factory=dict)
    """worker -> retry_after: that worker's next fetch is answered a queue-limit 429."""
    limited_at: list[float] = field(default_factory=list)
    """When each queue-limit 429 was answered."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, request_id: str, ready_in: float) -> None:
        self.ready_at[request_id] = time.monotonic() + ready_in

    def fetches_of(self, request_id: str) -> int:
        return sum(1 for f in self.fetches if f.request_id == request_id)

    def by(self, worker: str, start: float = 0.0, end: float = float("inf")) -> list[Fetch]:
        return [f for f in self.fetches if f.worker == worker and start <= f.at < end]

    def answer(self, request: httpx.Request) -> httpx.Response:
        rid = request.url.path.rsplit("/", 1)[1]
        if rid == "fetch":
            rid = json.loads(request.content)["request_id"]
        worker = request.headers.get("x-worker", "?")
        now = time.monotonic()
        with self.lock:
            self.fetches.append(Fetch(now, worker, rid))
            wait = self.rate_limit_next.pop(worker, None)
        if wait is not None:
            self.limited_at.append(now)
            body: dict[str, Any] = {
                "status": "error",
                "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
                "retry_after": wait,
            }
            return httpx.Response(429, json=body)
        ready = self.ready_at.get(rid, 0.0)
        if now >= ready:
            body = {"status": "success", "id": rid, "output": [f"https://cdn.example/{rid}.png"]}
        else:
            eta = min(self.eta, ready - now) if self.stated_eta is None else self.stated_eta
            body = {"status": "processing", "id": rid, "eta": eta}
        return httpx.Response(200, json=body)


@pytest.fixture
def fleet_api() -> Iterator[FleetAPI]:
    api = FleetAPI()
    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith=BASE_URL).mock(side_effect=api.answer)
        yield api


def worker(name: str, redis_url: str | None, **options: Any) -> AsyncModelsLab:
    """An AsyncModelsLab that names itself `name` in every request (`x-worker`)."""
    options.setdefault("poll_policy", QUICK)
    return AsyncModelsLab(
        api_key=API_KEY,
        base_url=BASE_URL,
        redis_url=redis_url,
        default_headers={"x-worker": name},
        **options,
    )


def hooked(name: str, redis_url: str | None, **options: Any) -> AsyncModelsLab:
    """A worker with webhooks configured (the same secret on every worker)."""
    return worker(name, redis_url, webhook_url=HOOK, webhook_secret=SECRET, **options)


def deliver(receiver: AsyncModelsLab | ModelsLab, request_id: str) -> str:
    """Deliver `request_id`'s success to `receiver`'s webhook receiver; return the token."""
    fields = receiver.webhooks.fields()
    url = fields["webhook"]
    receiver.webhooks.receive(url, delivery_body(request_id, fields["track_id"], url))
    return url.rsplit("/", 1)[1]


def delivery_body(request_id: str, track_id: str, webhook: str) -> bytes:
    """What ModelsLab POSTs when the job ends: the fetch record, `track_id`, `meta` echoing
    the webhook URL (with its token)."""
    return json.dumps(
        {
            "status": "success",
            "id": request_id,
            "output": [f"https://cdn.example/{request_id}.png"],
            "track_id": track_id,
            "meta": {"webhook": webhook, "track_id": track_id},
        }
    ).encode()
