"""The soak: many ids through wait_many against the simulator, with faults of every kind.

`python -m tests.soak --ids 20000 --write docs/reliability.md` (what `nox -s soak`
runs); a 2,000-id version runs in the default tests (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from modelslab_fetch import AsyncModelsLab, GenerationFailedError
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server

KEY = "soak-key-7e1f0c2a-not-real"

# 5% of fetches meet a fault, spread over every kind the simulator injects. A 429
# pauses the whole client (up to a second when Retry-After is absent or a whole-second
# HTTP date), so 429s are the rarer kind here, or pauses would be most of the wall time.
SOAK_FAULTS = Faults(
    error_rate=0.012,
    edge_page_rate=0.012,
    truncate_rate=0.012,
    stall_rate=0.006,
    stall=1.0,
    rate_limit_rate=0.008,
    retry_after=0.2,
    vary_retry_after=True,
)


@dataclass
class SoakReport:
    """What one soak did and what survived."""

    ids: int
    accounted_once: bool
    succeeded: int
    failed_as_simulated: int
    failed_otherwise: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    wall_s: float = 0.0
    fetches: int = 0

    @property
    def survived(self) -> bool:
        """Every id answered exactly once, and no fault turned into a failed id."""
        return self.accounted_once and not self.failed_otherwise

    def table(self) -> str:
        """The summary as a Markdown table."""
        rows = [
            ("ids", f"{self.ids:,}"),
            ("fetches sent", f"{self.fetches:,}"),
            ("each id answered exactly once", "yes" if self.accounted_once else "NO"),
            ("succeeded", f"{self.succeeded:,}"),
            (
                "failed as the simulator decided (GenerationFailedError)",
                f"{self.failed_as_simulated:,}",
            ),
            ("failed for any other reason", _counts(self.failed_otherwise) or "none"),
            ("retries (polls again after a fault)", f"{self.retries:,}"),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        rows += [(f"faults met: {kind}", f"{n:,}") for kind, n in sorted(self.faults.items())]
        return "\n".join(["| | |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counter.most_common())


class _RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "polling again" in message or "retrying" in message:
            self.count += 1


def run_soak(count: int, *, seed: int = 11) -> SoakReport:
    """Wait for `count` simulated jobs through faults; account for every one."""
    simulator = Simulator(api_key=KEY, seed=seed)
    app = SimulatorApp(simulator, faults=SOAK_FAULTS, seed=seed)
    ids = simulator.queue_many(count, ready_in=(0.0, 2.0), failure_rate=0.02)
    simulated_failures = {rid for rid in ids if simulator.jobs[rid].final != "success"}
    retries = _RetryCounter()
    logger = logging.getLogger("modelslab_fetch")
    logger.addHandler(retries)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    seen: Counter[int] = Counter()
    report = SoakReport(ids=count, accounted_once=False, succeeded=0, failed_as_simulated=0)

    async def soak(base_url: str) -> None:
        timeout = httpx.Timeout(0.5, connect=5.0)  # a stall of 1 s is a read timeout
        async with AsyncModelsLab(api_key=KEY, base_url=base_url, timeout=timeout) as client:
            async for outcome in client.images.wait_many(ids, timeout=180):
                seen[outcome.index] += 1
                if outcome.ok:
                    report.succeeded += 1
                elif isinstance(outcome.error, GenerationFailedError) and (
                    outcome.request_id in simulated_failures
                ):
                    report.failed_as_simulated += 1
                else:
                    report.failed_otherwise[type(outcome.error).__name__] += 1

    started = time.monotonic()
    try:
        with simulator_server(app) as base_url:
            anyio.run(soak, base_url)
    finally:
        logger.removeHandler(retries)
        logger.setLevel(previous_level)
    report.wall_s = time.monotonic() - started
    report.accounted_once = sorted(seen) == list(range(count)) and set(seen.values()) == {1}
    report.faults = Counter(app.faults.kinds)
    report.retries = retries.count
    report.fetches = sum(simulator.polls().values()) + sum(app.faults.injected.values())
    return report


def write_reliability(path: Path, report: SoakReport, command: str) -> None:
    """Replace the generated part of docs/reliability.md with this soak's table."""
    start, end = "<!-- soak:start -->", "<!-- soak:end -->"
    text = path.read_text() if path.exists() else f"{start}\n{end}\n"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    stamp = f"Measured {time.strftime('%Y-%m-%d')} with `{command}`:\n\n"
    path.write_text(f"{before}{start}\n{stamp}{report.table()}\n{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    report = run_soak(args.ids, seed=args.seed)
    print(report.table())
    if args.write:
        write_reliability(args.write, report, "nox -s soak")
    if not report.survived:
        raise SystemExit("the soak lost or failed ids: see the table above")


if __name__ == "__main__":
    main()
