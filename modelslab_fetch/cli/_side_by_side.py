"""The demo's comparison: the same jobs collected by polling alone, and with webhooks too.

Two groups of jobs with the same ready times, on a simulator of their own (no faults,
each `eta` off by a per-job factor, as on a server that misjudges a job), each collected
by its own client with `wait_for_many` from the jobs' generation responses. One client
polls only; the other also gives each job a webhook to a real receiver on loopback
(its `webhooks.asgi_app()` under uvicorn), which the simulator POSTs to 20-200 ms after
the job is ready. What differs is what webhooks buy: fetches per job, and lateness.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from .. import AsyncModelsLab
from ..testing import Simulator, SimulatorApp, WebhookServer, simulator_server, webhook_server

__all__ = ["SideBySide", "side_by_side"]

JOBS = 40
READY_IN = (1.0, 6.0)
KEY = "demo-side-by-side-key"


@dataclass
class Figures:
    """How one group's jobs were collected."""

    jobs: int
    finished: int
    fetches_per_job: float
    median_late_s: float
    p95_late_s: float
    deliveries: int = 0

    def as_json(self) -> dict[str, Any]:
        """The figures, rounded, for `--json`."""
        return {
            "jobs": self.jobs,
            "finished": self.finished,
            "fetches_per_job": round(self.fetches_per_job, 2),
            "median_late_s": round(self.median_late_s, 3),
            "p95_late_s": round(self.p95_late_s, 3),
            "deliveries": self.deliveries,
        }


class SideBySide:
    """Both groups on one simulator and one receiver; `run()` collects them at once."""

    def __init__(self, simulator: Simulator, base_url: str, hooks: WebhookServer) -> None:
        self._simulator = simulator
        self._base_url = base_url
        self._hooks = hooks
        self.polling: Figures | None = None
        self.push: Figures | None = None

    async def run(self) -> None:
        """Queue both groups (the same ready times) and collect each with its client."""
        ready_ins = [self._simulator.uniform(*READY_IN) for _ in range(JOBS)]
        async with (
            AsyncModelsLab(api_key=KEY, base_url=self._base_url) as polling,
            AsyncModelsLab(
                api_key=KEY, base_url=self._base_url, **self._hooks.client_options
            ) as push,
        ):
            self._hooks.receive_for(push)
            plain = [self._simulator.queue_response(ready_in=r) for r in ready_ins]
            hooked = []
            for ready_in in ready_ins:
                fields = push.webhooks.fields()
                hooked.append(
                    self._simulator.queue_response(
                        ready_in=ready_in, webhook=fields["webhook"], track_id=fields["track_id"]
                    )
                )
            async with anyio.create_task_group() as group:

                async def collect_polling() -> None:
                    self.polling = await self._collect(polling, plain)

                async def collect_push() -> None:
                    self.push = await self._collect(push, hooked)

                group.start_soon(collect_polling)
                group.start_soon(collect_push)
        if self.push is not None:
            self.push.deliveries = self._hooks.answered[200]

    async def _collect(self, client: AsyncModelsLab, responses: list[dict[str, Any]]) -> Figures:
        returned: dict[str, float] = {}
        async with client.wait_for_many(responses, timeout=60) as outcomes:
            async for outcome in outcomes:
                if outcome.ok:
                    returned[outcome.request_id] = time.monotonic()  # the simulator's clock
        ids = [str(response["id"]) for response in responses]
        jobs = self._simulator.jobs
        late = sorted(max(at - jobs[rid].ready_at, 0.0) for rid, at in returned.items())
        polls = self._simulator.polls(ids)
        return Figures(
            jobs=len(ids),
            finished=len(returned),
            fetches_per_job=statistics.mean(polls.values()),
            median_late_s=statistics.median(late) if late else 0.0,
            p95_late_s=late[int(0.95 * (len(late) - 1))] if late else 0.0,
        )

    def as_json(self) -> dict[str, Any]:
        """The `--json` event of the comparison."""
        return {
            "event": "push_and_poll",
            "ready_in_s": list(READY_IN),
            "polling": None if self.polling is None else self.polling.as_json(),
            "webhooks": None if self.push is None else self.push.as_json(),
        }

    def prose(self) -> str:
        """The comparison in a few lines for people."""
        if self.polling is None or self.push is None:
            return ""
        low, high = READY_IN
        lines = [
            f"push and poll side by side ({JOBS} jobs ready in {low:g}-{high:g} s, the same "
            "ready times for both):"
        ]
        for name, figures in (("polling alone", self.polling), ("webhooks + polling", self.push)):
            words = (
                f"  {name:<19} {figures.fetches_per_job:.2f} fetches per job, "
                f"{figures.median_late_s:.2f} s late (median), {figures.p95_late_s:.2f} s (p95)"
            )
            if figures is self.push:
                words += f", {figures.deliveries} deliveries received"
            lines.append(words)
        lines.append(
            "  (a wait ends on the delivery after one confirming fetch, and keeps polling "
            "in case it is lost: see docs/webhooks.md)"
        )
        return "\n".join(lines) + "\n"


@contextmanager
def side_by_side(seed: int) -> Iterator[SideBySide]:
    """A simulator and a webhook receiver of their own, served while the block runs."""
    simulator = Simulator(api_key=KEY, seed=seed, eta_error_model="per_job")
    app = SimulatorApp(simulator, seed=seed)
    with simulator_server(app) as base_url, webhook_server() as hooks:
        yield SideBySide(simulator, base_url, hooks)
