"""Instructions the SDK spends per request, counted by valgrind: a figure that does not drift.

Run: python benchmarks/instructions.py [fetch|fetch_many|wait_many|transport|bare|socket ...]
(needs valgrind: `apt-get install valgrind`). Each path is run against a backend that
answers at once with a typical finished body (no sockets, no server), twice under
`valgrind --tool=cachegrind` with 200 and 1,200 requests; the difference over 1,000 is
the instructions one request costs, imports and set-up cancelled out. CPU time on a
shared 2-core VM moved by 40% between identical runs; this count moves by under 1%, so
a cut of a few percent can be seen, and kept or thrown away, in one run.

`bare` is the floor: the fake backend's answer and `json.loads`, in the same 32 workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from typing import Any

from multidict import CIMultiDict

from modelslab_fetch import AsyncModelsLab
from modelslab_fetch._http._backends._contract import RawResponse

BODY = json.dumps(
    {
        "status": "success",
        "id": 30000001,
        "output": ["https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/a.png"],
        "proxy_links": ["https://cdn2.stablediffusionapi.com/generations/a.png"],
        "meta": {"prompt": "a cat", "seed": 123, "W": 512, "H": 512, "steps": 20},
        "generationTime": 1.23,
        "eta": 0,
        "tip": "",
        "future_links": [],
    }
).encode()
HEADERS = CIMultiDict(
    {"content-type": "application/json", "content-length": str(len(BODY)), "server": "uvicorn"}
)
CONCURRENCY = int(os.environ.get("CONCURRENCY", "32"))
MODES = ("bare", "transport", "fetch", "fetch_many", "wait_many", "socket")


class AnswersAtOnce:
    """A backend whose every POST is answered with BODY after one trip through the loop."""

    async def post(self, url: str, content: bytes, headers: Any, timeout: Any) -> RawResponse:
        await asyncio.sleep(0)
        return RawResponse(200, HEADERS, BODY, url, "OK")

    async def aclose(self) -> None:
        pass


async def workers(ids: list[str], one: Any) -> None:
    source = iter(ids)

    async def worker() -> None:
        for rid in source:
            await one(rid)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def run(mode: str, count: int) -> None:
    ids = [str(n) for n in range(count)]
    if mode == "bare":
        backend = AnswersAtOnce()

        async def answered(rid: str) -> None:
            json.loads((await backend.post("u", b"", {}, None)).content)

        await workers(ids, answered)
        return
    async with AsyncModelsLab(
        api_key="k" * 32, base_url="http://127.0.0.1:9/api", max_concurrency=CONCURRENCY
    ) as client:
        # The default backend's factory, swapped for one that answers at once.
        transport = client._transport
        transport._kind = "aiohttp"
        transport._aiohttp_backends._create = AnswersAtOnce  # type: ignore[assignment]
        if mode == "transport":

            async def posted(rid: str) -> None:
                await transport.post_json("/v6/images/fetch", {"request_id": rid}, request_id=rid)

            await workers(ids, posted)
        elif mode == "fetch":
            await workers(ids, client.images.fetch)
        elif mode == "fetch_many":
            async for _ in client.images.fetch_many(ids, concurrency=CONCURRENCY):
                pass
        else:
            async for _ in client.images.wait_many(ids, concurrency=CONCURRENCY):
                pass


def over_socket(client: str, base: str, count: int) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import bench  # the benchmark's own clients, only for this mode

    variant = bench.sdk_default if client == "sdk" else bench.aiohttp_loop
    ids = [f"{client}{os.getpid()}-{n}" for n in range(count)]
    assert asyncio.run(variant(base, CONCURRENCY, ids)) == count


def instructions(mode: str, count: int, *extra: str) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        mode,
        str(count),
        *extra,
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise SystemExit(out.stderr[-2000:])
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        if sys.argv[2] in ("sdk", "aiohttp"):
            over_socket(sys.argv[2], sys.argv[4], int(sys.argv[3]))
        else:
            asyncio.run(run(sys.argv[2], int(sys.argv[3])))
        return
    for mode in sys.argv[1:] or MODES:
        if mode not in MODES:
            raise SystemExit(f"unknown path {mode!r}; one of {', '.join(MODES)}")
        if mode == "socket":
            socket_ratio()
            continue
        per_request = (instructions(mode, 1200) - instructions(mode, 200)) / 1000
        print(f"{mode:11} {per_request / 1000:7.1f} k instructions per request")


def socket_ratio() -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import bench  # the benchmark's own clients, only for this mode

    counted = {}
    with bench.simulator_process() as base:
        for client in ("aiohttp", "sdk"):
            low, high = instructions(client, 200, base), instructions(client, 1200, base)
            counted[client] = (high - low) / 1000
            name = "wait_many" if client == "sdk" else "aiohttp loop"
            print(f"socket {name:12} {counted[client] / 1000:7.1f} k instructions per request")
    print(f"socket ratio {counted['sdk'] / counted['aiohttp']:.2f}x the plain aiohttp loop")


if __name__ == "__main__":
    main()
