"""Webhook benchmarks: push and poll side by side (issue 23), for `benchmarks/bench.py`.

`python benchmarks/bench.py --webhooks-only` runs them alone and rewrites their section
of docs/performance.md; `nox -s bench` runs them with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from bench import KEY, LONG_JOBS, LONG_READY_IN, free_port

from modelslab_fetch import AsyncModelsLab, PollPolicy
from modelslab_fetch.testing import WebhookServer, webhook_server

# Push and poll side by side (issue 23). Each case is a group of jobs with the same ready
# times as every other group of its scenario, collected by its own client (with its own
# receiver: `modelslab_fetch.testing.webhook_server`, uvicorn on loopback, as an app
# would mount `client.webhooks.asgi_app()`), against `modelslab-fetch simulate` run in
# its own process with one bias per job (`per_job`). The groups of a scenario run one
# after the other, the long jobs in the background meanwhile (real time: 2 minutes).

WEBHOOK_JOBS = 300
WEBHOOK_READY_IN = (1.0, 8.0)
WEBHOOK_DROP_RATE = 0.3
WEBHOOK_STRETCHES = (1.0, 1.25, 1.5, 1.75, 2.0)
DEFAULT_STRETCH = PollPolicy().push_stretch
WEBHOOK_GOALS = {"fetches": 1.1, "median": 0.15, "p95": 0.3, "long_fetches": 1.5}


@dataclass(frozen=True)
class WebhookCase:
    """One group: how its client waits, with or without webhooks."""

    name: str
    push: bool = True
    stretch: float = DEFAULT_STRETCH
    trust: bool = False
    by_id: bool = False  # `wait(id)` on each job instead of `wait_for_many(responses)`


WebhookRow = dict[str, Any]


def default(stretch: float) -> str:
    return " (default)" if stretch == DEFAULT_STRETCH else ""


@contextlib.contextmanager
def webhook_simulator(drop_rate: float) -> Iterator[str]:
    """`modelslab-fetch simulate` in its own process, dropping `drop_rate` of deliveries."""
    port = free_port()
    command = [sys.executable, "-m", "modelslab_fetch", "simulate", "--port", str(port)]
    command += ["--seed", "1", "--eta-error-model", "per_job"]
    command += ["--webhook-drop-rate", str(drop_rate)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


Jobs = list[tuple[float, float]]
"""Each job's ready time, and the factor its generation response's `eta` is off by."""


def draw_jobs(draw: random.Random, count: int, ready_in: tuple[float, float]) -> Jobs:
    return [(draw.uniform(*ready_in), 1 + draw.uniform(-0.4, 0.4)) for _ in range(count)]


async def queue_responses(
    base: str, jobs: Jobs, fields: Callable[[], dict[str, str]] | None
) -> list[dict[str, Any]]:
    """One generation response per job, each with its webhook fields (if any).

    The simulator's generation response gives the true time left as its `eta`;
    ModelsLab's is an estimate like any other. So each is put off by the job's own
    factor (up to ±40%, the same for every group), as the fetch answers' are.
    """
    responses = []
    async with httpx.AsyncClient(base_url=base) as http:
        for ready_in, factor in jobs:
            spec: dict[str, Any] = {"ready_in": [ready_in, ready_in]}
            if fields is not None:
                spec["webhooks"] = [fields()]
            answer = await http.post("/_simulator/responses", json=spec)
            (response,) = answer.json()["responses"]
            response["eta"] = round(response["eta"] * factor, 2)
            responses.append(response)
    return responses


async def job_stats(base: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{base}/_simulator/stats")).json()
    return {rid: stats[rid] for rid in ids}


async def run_webhook_case(
    base: str, jobs: Jobs, case: WebhookCase, hooks: WebhookServer
) -> WebhookRow:
    """Queue one job per ready time, collect them all as `case` says; the figures.

    `hooks` is the receiver the case's client takes deliveries from (started beforehand:
    starting and stopping a server would stall the loop the other cases wait on).
    """
    returned: dict[str, float] = {}
    delivered: set[str] = set()
    policy = PollPolicy(push_stretch=case.stretch)
    options: dict[str, Any] = hooks.client_options if case.push else {}
    async with AsyncModelsLab(
        api_key=KEY,
        base_url=f"{base}/api",
        poll_policy=policy,
        trust_webhooks=case.trust,
        **options,
    ) as client:
        if case.push:
            hooks.receive_for(client)
            client.webhooks.on_delivery(lambda delivery: delivered.add(delivery.request_id))
        fields = client.webhooks.fields if case.push else None
        responses = await queue_responses(base, jobs, fields)
        if case.by_id:

            async def one(rid: str) -> None:
                await client.images.wait(rid, timeout=600)
                returned[rid] = time.time()

            await asyncio.gather(*(one(str(r["id"])) for r in responses))
        else:
            async for outcome in client.wait_for_many(responses, timeout=600):
                assert outcome.ok, outcome.error
                returned[outcome.request_id] = time.time()
    ids = [str(r["id"]) for r in responses]
    stats = await job_stats(base, ids)
    lateness = {rid: max(returned[rid] - stats[rid]["ready_at"], 0.0) for rid in ids}
    lost = sorted(lateness[rid] for rid in ids if case.push and rid not in delivered)
    return {
        "jobs": len(ids),
        "finished": len(returned),
        "delivered": len(delivered & set(ids)),
        "fetches_per_job": statistics.mean(stats[rid]["polls"] for rid in ids),
        **quantiles(sorted(lateness.values()), ""),
        **quantiles(lost, "lost_"),
    }


def quantiles(values: list[float], prefix: str) -> dict[str, float]:
    if not values:
        return {}
    return {
        f"{prefix}median_s": statistics.median(values),
        f"{prefix}p95_s": values[int(0.95 * (len(values) - 1))],
        f"{prefix}max_s": values[-1],
    }


WEBHOOK_SCENARIOS: dict[str, tuple[float, list[WebhookCase]]] = {
    "every delivery sent": (
        0.0,
        [
            WebhookCase("polling alone", push=False),
            WebhookCase("push + poll, confirming (default)"),
            *(
                WebhookCase(f"push + poll, confirming, push_stretch {stretch:g}", stretch=stretch)
                for stretch in WEBHOOK_STRETCHES
                if stretch not in (1.0, DEFAULT_STRETCH)
            ),
            WebhookCase("push + poll, `wait(id)` per job", by_id=True),
            WebhookCase("push + poll, trusted (`trust_webhooks=True`)", trust=True),
        ],
    ),
    f"{WEBHOOK_DROP_RATE:.0%} of deliveries dropped": (
        WEBHOOK_DROP_RATE,
        [
            WebhookCase("polling alone", push=False),
            *(
                WebhookCase(
                    f"push + poll, push_stretch {stretch:g}{default(stretch)}", stretch=stretch
                )
                for stretch in WEBHOOK_STRETCHES
            ),
        ],
    ),
}
WEBHOOK_LONG_CASES: dict[str, tuple[float, WebhookCase]] = {
    "polling alone": (0.0, WebhookCase("polling alone", push=False)),
    "push + poll": (0.0, WebhookCase("push + poll")),
    f"push + poll, {WEBHOOK_DROP_RATE:.0%} dropped": (WEBHOOK_DROP_RATE, WebhookCase("push")),
    f"push + poll, {WEBHOOK_DROP_RATE:.0%} dropped, push_stretch 1.5": (
        WEBHOOK_DROP_RATE,
        WebhookCase("push, 1.5", stretch=1.5),
    ),
}


async def webhook_runs(
    bases: dict[float, str], receivers: list[WebhookServer]
) -> tuple[dict[tuple[str, str], WebhookRow], dict[str, WebhookRow]]:
    draw = random.Random(23)  # the same ready times for every group of a scenario
    long_jobs = draw_jobs(draw, LONG_JOBS, LONG_READY_IN)
    shared, *own = receivers
    long_runs = asyncio.gather(
        *(
            run_webhook_case(bases[drop], long_jobs, case, hooks)
            for (drop, case), hooks in zip(WEBHOOK_LONG_CASES.values(), own, strict=True)
        )
    )
    short: dict[tuple[str, str], WebhookRow] = {}
    for scenario, (drop, cases) in WEBHOOK_SCENARIOS.items():
        jobs = draw_jobs(draw, WEBHOOK_JOBS, WEBHOOK_READY_IN)
        for case in cases:  # one after the other, each taking the shared receiver in turn
            row = await run_webhook_case(bases[drop], jobs, case, shared)
            short[(scenario, case.name)] = row
    long = dict(zip(WEBHOOK_LONG_CASES, await long_runs, strict=True))
    return short, long


def webhooks() -> tuple[dict[tuple[str, str], WebhookRow], dict[str, WebhookRow]]:
    """Push and poll on the same jobs: 300 of 1-8 s per group, 50 of 20-120 s."""
    with contextlib.ExitStack() as stack:
        every = stack.enter_context(webhook_simulator(0.0))
        dropping = stack.enter_context(webhook_simulator(WEBHOOK_DROP_RATE))
        receivers = [
            stack.enter_context(webhook_server()) for _ in range(1 + len(WEBHOOK_LONG_CASES))
        ]
        bases = {0.0: every, WEBHOOK_DROP_RATE: dropping}
        return asyncio.run(webhook_runs(bases, receivers))


def webhook_report(
    short: dict[tuple[str, str], WebhookRow], long: dict[str, WebhookRow]
) -> list[str]:
    lines = [
        f"### Webhooks: push and poll ({WEBHOOK_JOBS} jobs ready in 1-8 s per group, the same "
        "ready times for every group of a scenario, collected with `wait_for_many` from their "
        "generation responses (their eta off by up to ±40%, as every eta); deliveries 20-200 "
        "ms after readiness; each job's etas off by a factor of its own; 'jobs with no "
        "delivery': dropped, or delivered after the wait had ended by a poll)",
        "",
        "| deliveries | client | jobs finished | delivered | fetches per job | median lateness s "
        "| p95 lateness s | max s | jobs with no delivery: median / p95 / max s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (scenario, name), row in short.items():
        lines.append(webhook_line(scenario, name, row))
    lines += [
        "",
        f"### Webhooks on long jobs ({LONG_JOBS} jobs ready in {LONG_READY_IN[0]}-"
        f"{LONG_READY_IN[1]} s, real time, the three groups at once)",
        "",
        "| deliveries | client | jobs finished | delivered | fetches per job | median lateness s "
        "| p95 lateness s | max s | jobs with no delivery: median / p95 / max s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in long.items():
        lines.append(webhook_line("", name, row))
    return [*lines, "", *webhook_goals(short, long)]


def webhook_line(scenario: str, name: str, row: WebhookRow) -> str:
    lost = (
        f"{row['lost_median_s']:.2f} / {row['lost_p95_s']:.2f} / {row['lost_max_s']:.2f}"
        if "lost_median_s" in row
        else ""
    )
    return (
        f"| {scenario} | {name} | {row['finished']}/{row['jobs']} | {row['delivered']} | "
        f"{row['fetches_per_job']:.2f} | {row['median_s']:.3f} | {row['p95_s']:.3f} | "
        f"{row['max_s']:.2f} | {lost} |"
    )


def webhook_goals(
    short: dict[tuple[str, str], WebhookRow], long: dict[str, WebhookRow]
) -> list[str]:
    every, dropped = list(WEBHOOK_SCENARIOS)
    push = short[(every, "push + poll, confirming (default)")]
    alone = short[(dropped, "polling alone")]
    default_stretch = short[(dropped, f"push + poll, push_stretch {DEFAULT_STRETCH:g} (default)")]
    checks = [
        ("fetches per job, confirming", push["fetches_per_job"], WEBHOOK_GOALS["fetches"]),
        ("median lateness s", push["median_s"], WEBHOOK_GOALS["median"]),
        ("p95 lateness s", push["p95_s"], WEBHOOK_GOALS["p95"]),
        (
            "30% dropped: fetches per job vs polling alone",
            default_stretch["fetches_per_job"],
            alone["fetches_per_job"],
        ),
        (
            "long jobs: fetches per job with push",
            long["push + poll"]["fetches_per_job"],
            WEBHOOK_GOALS["long_fetches"],
        ),
    ]
    lines = ["| goal | measured | target | |", "|---|---:|---:|---|"]
    for label, measured, target in checks:
        met = "met" if measured <= target else "MISSED"
        lines.append(f"| {label} | {measured:.3f} | <= {target:.3f} | {met} |")
    finished = all(row["finished"] == row["jobs"] for row in [*short.values(), *long.values()])
    lines.append(
        f"| every job finished, deliveries lost or not | {finished} | True | "
        f"{'met' if finished else 'MISSED'} |"
    )
    return lines
