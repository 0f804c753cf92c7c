"""Where the time of one request goes: 4,000 fetches at 32 in flight under cProfile.

Run: python benchmarks/profile_request.py (it starts the simulator in its own process, as
bench.py does). Prints the CPU time per request, and the profile's own time grouped by
where it is spent, for docs/performance.md. cProfile slows everything about alike, so the
shares, not the absolute times, are what it tells.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

from modelslab_fetch import AsyncModelsLab

REQUESTS = 4_000
CONCURRENCY = 32

# Where a function's own time is counted: the first prefix its file path contains.
AREAS = [
    ("modelslab_fetch/_redaction", "SDK: redaction of the key"),
    ("modelslab_fetch/_results", "SDK: building the result"),
    ("modelslab_fetch/_text", "SDK: building the result"),
    ("modelslab_fetch/_http/_answers", "SDK: reading the answer"),
    ("modelslab_fetch/_http/_backends", "SDK: the backend (deadline, size cap)"),
    ("modelslab_fetch/_http/_traffic", "SDK: traffic control"),
    ("modelslab_fetch/_http", "SDK: transport, retries"),
    ("modelslab_fetch/_jobs/_batch", "SDK: the batch"),
    ("modelslab_fetch/_endpoints", "SDK: the resource"),
    ("modelslab_fetch", "SDK: other"),
    ("pydantic", "pydantic"),
    ("aiohttp", "aiohttp"),
    ("yarl", "aiohttp"),
    ("multidict", "aiohttp"),
    ("anyio", "anyio (cancel scopes, streams)"),
    ("sniffio", "anyio (cancel scopes, streams)"),
    ("asyncio", "asyncio event loop"),
    ("json", "json"),
]


def area_of(filename: str, name: str) -> str:
    if filename == "~":  # built-in functions: named by what calls them most
        if "socket" in name or "select" in name or "epoll" in name:
            return "sockets (kernel)"
        if "pydantic" in name or "validate" in name:
            return "pydantic"
        if "re.Pattern" in name:
            return "SDK: redaction of the key"
        return "builtins (len, dict, contextvars...)"
    for prefix, area in AREAS:
        if prefix in filename:
            return area
    return "other"


async def run(base: str) -> float:
    ids = [str(30_000_000 + n) for n in range(REQUESTS)]
    async with AsyncModelsLab(
        api_key=bench.KEY, base_url=f"{base}/api", max_concurrency=CONCURRENCY
    ) as client:
        async for _ in client.images.fetch_many(ids[:200], concurrency=CONCURRENCY):
            pass  # warm: connections open, validators built
        profile = cProfile.Profile()
        started = time.process_time()
        profile.enable()
        async for _ in client.images.fetch_many(ids, concurrency=CONCURRENCY):
            pass
        profile.disable()
        cpu = time.process_time() - started
    profile.dump_stats("/tmp/modelslab-fetch-request.prof")
    return cpu / REQUESTS


def main() -> None:
    with bench.simulator_process() as base:
        per_request = asyncio.run(run(base))
    stats = pstats.Stats("/tmp/modelslab-fetch-request.prof")
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        totals[area_of(filename, name)] += row[2]  # own time
    whole = sum(totals.values())
    print(f"CPU per request under the profiler: {per_request * 1000:.3f} ms")
    print("| where | share of the time |")
    print("|---|---:|")
    for area, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {area} | {seconds / whole:.0%} |")


if __name__ == "__main__":
    main()
