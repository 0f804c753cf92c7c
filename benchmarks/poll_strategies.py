"""Offline: how poll schedules trade polls for lateness, over 20,000 simulated jobs.

No sockets and no sleeping: just the arithmetic of poll times against ready times, with a
per-request latency, for the two ways a server's `eta` can be wrong: a factor drawn once
per job (a consistent bias) or afresh for every answer. Used to choose the defaults of
`modelslab_fetch._jobs._readiness`; run with `python benchmarks/poll_strategies.py`.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable
from typing import Any

from modelslab_fetch import PollPolicy
from modelslab_fetch._jobs._readiness import ReadinessEstimate

LATENCY = 0.02  # seconds per request, the server answering half way
ERROR = 0.4  # the simulator's default: every eta off by up to ±40%

Strategy = Callable[[], Callable[[float, float], float]]
"""A factory of per-job schedules: (answered_at, eta) -> the next poll time."""


def today() -> Callable[[float, float], float]:
    policy = PollPolicy(eta_factor=0.75, eta_offset=0.7)
    return lambda now, eta: now + policy.delay_after_eta(eta)


def fixed(seconds: float) -> Strategy:
    return lambda: lambda now, eta: now + seconds


def learning(**options: Any) -> Strategy:
    def make() -> Callable[[float, float], float]:
        estimate = ReadinessEstimate()
        for name, value in options.items():  # the tuning knobs are attributes
            setattr(estimate, name, value)

        def schedule(now: float, eta: float) -> float:
            estimate.observe(now, eta)
            wanted = estimate.next_poll(now)
            assert wanted is not None
            return wanted

        return schedule

    return make


def run(
    strategy: Strategy, *, model: str, jobs: int, ready_in: tuple[float, float], seed: int = 7
) -> dict[str, float]:
    rng = random.Random(seed)
    polls_total = 0
    lateness = []
    for _ in range(jobs):
        ready = rng.uniform(*ready_in)
        factor = 1 + rng.uniform(-ERROR, ERROR)
        schedule = strategy()
        sent = 0.0
        while True:
            polls_total += 1
            served = sent + LATENCY / 2
            received = sent + LATENCY
            if served >= ready:
                lateness.append(received - ready)
                break
            if model == "per_answer":
                factor = 1 + rng.uniform(-ERROR, ERROR)
            eta = round((ready - served) * factor, 2)
            sent = max(schedule(received, eta), received)
    lateness.sort()
    return {
        "polls": polls_total / jobs,
        "median": statistics.median(lateness),
        "p95": lateness[int(0.95 * (len(lateness) - 1))],
        "max": lateness[-1],
    }


STRATEGIES: dict[str, Strategy] = {
    "today (eta*0.75+0.7)": today,
    "fixed 1 s": fixed(1.0),
    "learning (defaults)": learning(),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--grid", action="store_true", help="search the learning parameters")
    args = parser.parse_args()
    cases = [("per_job", (1.0, 8.0)), ("per_answer", (1.0, 8.0))]
    if not args.grid:
        cases += [("per_job", (20.0, 120.0)), ("per_answer", (20.0, 120.0))]
    strategies = dict(STRATEGIES)
    if args.grid:
        strategies["interval only"] = learning(learn=False)
        strategies["two answers trusted (no reach)"] = learning(reach=float("inf"))
        for slack in (0.5, 0.6, 0.7):
            for reach in (0.6, 0.8, 1.0):
                strategies[f"slack={slack} reach={reach}"] = learning(slack=slack, reach=reach)
    print("| strategy | error | ready in | polls/job | median s | p95 s | max s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for model, ready_in in cases:
        for name, strategy in strategies.items():
            jobs = args.jobs if ready_in[1] < 20 else args.jobs // 4
            r = run(strategy, model=model, jobs=jobs, ready_in=ready_in)
            print(
                f"| {name} | {model} | {ready_in[0]:g}-{ready_in[1]:g} s | {r['polls']:.2f} | {r['median']:.3f} | {r['p95']:.3f} | {r['max']:.2f} |"
            )


if __name__ == "__main__":
    main()
