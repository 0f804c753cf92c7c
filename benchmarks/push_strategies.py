"""Offline: how `PollPolicy.push_stretch` trades fetches for the cost of a lost delivery.

No sockets and no sleeping, as poll_strategies.py: the arithmetic of the learning
schedule's polls, each gap stretched while a webhook delivery is expected, against ready
times, with 20 ms per request. Each job's generation response carries an `eta` off by up
to ±40%, and every later `eta` is off by the job's own factor (the simulator's `per_job`
model); its delivery comes 20-200 ms after it is ready, unless dropped. A wait ends on
whichever comes first: the delivery (then one confirming fetch) or a poll that finds the
job ready. Used to choose `push_stretch`; run with `python benchmarks/push_strategies.py
[STRETCH ...]`. bench.py measures the chosen values over real sockets.
"""

from __future__ import annotations

import argparse
import random
import statistics

from modelslab_fetch import PollPolicy

LATENCY = 0.02
ERROR = 0.4


def run(
    stretch: float,
    ready_in: tuple[float, float],
    jobs: int,
    drop: float,
    *,
    cap: float = 120.0,
    seed: int = 7,
) -> tuple[float, list[float]]:
    """Fetches per job, and the lateness of the jobs whose delivery was dropped."""
    rng = random.Random(seed)
    policy = PollPolicy(push_stretch=stretch, push_max_interval=cap)
    longest = max(policy.max_interval, cap)  # as the wait does while a delivery is expected
    polls = 0
    lost = []
    for _ in range(jobs):
        ready = rng.uniform(*ready_in)
        first_factor = 1 + rng.uniform(-ERROR, ERROR)
        bias = 1 + rng.uniform(-ERROR, ERROR)
        dropped = rng.random() < drop
        delivered = ready + rng.uniform(0.02, 0.2)
        estimate = PollPolicy(max_interval=longest).readiness_estimate()
        now, eta = 0.0, round(ready * first_factor, 2)
        while True:
            estimate.observe(now, eta)
            wanted = estimate.next_poll(now)
            assert wanted is not None
            gap = min(max(wanted - now, policy.min_interval), longest)
            poll_at = now + min(gap * stretch, cap)
            polls += 1
            if not dropped and delivered < poll_at:
                break  # the delivery ends the wait: one confirming fetch
            if poll_at + LATENCY / 2 >= ready:
                if dropped:
                    lost.append(poll_at + LATENCY - ready)
                break
            now = poll_at + LATENCY
            eta = round((ready - (poll_at + LATENCY / 2)) * bias, 2)
    return polls / jobs, sorted(lost)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stretches", nargs="*", type=float, default=[1.0, 1.25, 1.5, 1.75, 2.0])
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    print(
        "| ready in | push_stretch | fetches per job | a lost delivery costs: median / p95 / max s |"
    )
    print("|---|---:|---:|---|")
    for ready_in, jobs in (((1.0, 8.0), args.jobs), ((20.0, 120.0), args.jobs // 4)):
        for stretch in args.stretches:
            fetches, _ = run(stretch, ready_in, jobs, 0.0)
            _, lost = run(stretch, ready_in, jobs, 0.3)
            cost = f"{statistics.median(lost):.2f} / {lost[int(0.95 * (len(lost) - 1))]:.2f} / {lost[-1]:.2f}"
            print(f"| {ready_in[0]:g}-{ready_in[1]:g} s | {stretch:g} | {fetches:.2f} | {cost} |")


if __name__ == "__main__":
    main()
