"""Fleet benchmarks (issue 24): worker processes sharing through Redis, side by side without.

Run with `python benchmarks/bench.py --fleet-only` (and as part of `nox -s bench`). Every
worker is a process of its own (`python benchmarks/fleet.py --worker CONFIG`) with its own
client and, for webhooks, its own receiver served by uvicorn on its own port. The
simulator runs in this process, behind a front that records every fetch (when, and which
worker sent it: each worker names itself in a header) and answers a queue-limit 429 to a
chosen worker on demand. Redis is a real `redis-server` on a free loopback port.

1. 4 workers, 300 jobs ready in 1-8 s, collected with `wait_for_many` (each worker its
   share), every delivery POSTed to a random worker's receiver: with Redis, and without.
2. A queue-limit 429 (`retry_after: 3`) answered to one worker while all fetch: how many
   requests the others send during those 3 s, with and without Redis.
3. 8 workers waiting on the same 100 ids, against one worker alone on 100 others.
4. As 1, with Redis killed 2 s in and restarted 5 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
SECRET = "bench-fleet-webhook-secret-0123456789abcdef"
FLEET_JOBS = 300
WORKERS = 4
SAME_IDS = 100
SAME_WORKERS = 8
READY_IN = (1.0, 8.0)
PAUSE = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- redis


class RedisProcess:
    """redis-server on a free loopback port, nothing on disk; stopped and restarted at will."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise SystemExit("the fleet benchmarks need redis-server (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

        self.runs = 0

    @property
    def url(self) -> str:
        """A fresh prefix for each run: the simulators of two runs reuse the same ids,
        and records kept from an earlier run would end the next run's waits."""
        self.runs += 1
        return f"redis://127.0.0.1:{self.port}/0#bench{self.runs}:"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(500):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


# ------------------------------------------------------------------- simulator front


class Front:
    """The simulator's ASGI app, with every fetch recorded and 429s answered on demand."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.simulator = app.simulator  # what simulator_server() sets its URLs on
        self.log: list[tuple[float, str]] = []
        self.limit: dict[str, float] = {}
        self.limited_at: float | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_simulator"):
            worker = dict(scope["headers"]).get(b"x-worker", b"?").decode()
            now = time.monotonic()
            self.log.append((now, worker))
            wait = self.limit.pop(worker, None)
            if wait is not None:
                self.limited_at = now
                body = json.dumps(
                    {
                        "status": "error",
                        "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
                        "retry_after": wait,
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@contextlib.contextmanager
def served(**simulator_options: Any) -> Iterator[tuple[str, Any, Front]]:
    from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server

    simulator = Simulator(api_key=KEY, seed=7, **simulator_options)
    simulator.deliver_with(Faults())  # deliveries 20-200 ms after readiness, none lost
    front = Front(SimulatorApp(simulator))
    with simulator_server(front) as base_url:  # type: ignore[arg-type]
        yield base_url, simulator, front


# ------------------------------------------------------------------------- workers


class Worker:
    """One worker process: started, told its task once ready, read for its result."""

    def __init__(self, name: str, base_url: str, redis_url: str | None, hooks: bool) -> None:
        self.name = name
        self.hook_port = free_port() if hooks else 0
        config = {
            "name": name,
            "base_url": base_url,
            "redis_url": redis_url,
            "hook_port": self.hook_port,
        }
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith('{"ready"'):
            raise RuntimeError(f"worker {self.name} did not start: {line!r}")

    def give(self, task: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.process.wait(60)
        return json.loads(line)  # type: ignore[no-any-return]


@contextlib.contextmanager
def fleet(count: int, base_url: str, redis_url: str | None, hooks: bool) -> Iterator[list[Worker]]:
    workers = [Worker(f"w{n}", base_url, redis_url, hooks) for n in range(count)]
    try:
        for worker in workers:
            worker.ready()
        yield workers
    finally:
        for worker in workers:
            worker.process.kill()
            worker.process.wait()
            for stream in (worker.process.stdin, worker.process.stdout):
                if stream is not None:
                    stream.close()


async def worker_run(config: dict[str, Any]) -> None:
    import uvicorn

    from modelslab_fetch import AsyncModelsLab, ModelsLabError

    hooks = bool(config["hook_port"])
    redis_url, _, prefix = (config["redis_url"] or "").partition("#")
    client = AsyncModelsLab(
        api_key=KEY,
        base_url=config["base_url"],
        redis_url=redis_url or None,
        redis_prefix=prefix or None,
        webhook_url=f"http://127.0.0.1:{config['hook_port']}/hooks" if hooks else None,
        webhook_secret=SECRET if hooks else None,
        default_headers={"x-worker": config["name"]},
        max_concurrency=64,
    )
    server = None
    if hooks:
        server = uvicorn.Server(
            uvicorn.Config(
                client.webhooks.asgi_app(),
                host="127.0.0.1",
                port=config["hook_port"],
                log_level="critical",
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
    print(json.dumps({"ready": True}), flush=True)
    task = json.loads(await asyncio.to_thread(sys.stdin.readline))
    done: dict[str, float] = {}
    failed = 0
    errors: list[str] = []
    if task["kind"] == "wait_for_many":
        async for outcome in client.wait_for_many(task["responses"], timeout=90):
            done[outcome.request_id] = time.monotonic()
            failed += not outcome.ok
            if outcome.error is not None:
                errors.append(repr(outcome.error)[:300])
    elif task["kind"] == "wait_many":
        async for outcome in client.images.wait_many(task["ids"], timeout=90):
            done[outcome.request_id] = time.monotonic()
            failed += not outcome.ok
    else:  # "fetch": fetch finished jobs, a little apart, until told seconds have passed
        until = time.monotonic() + task["seconds"]

        async def loop(n: int) -> None:
            while time.monotonic() < until:
                with contextlib.suppress(ModelsLabError):
                    await client.images.fetch(task["ids"][n % len(task["ids"])])
                await asyncio.sleep(0.05)

        await asyncio.gather(*(loop(n) for n in range(3)))
    print(json.dumps({"done": done, "failed": failed, "errors": errors[:5]}), flush=True)
    if server is not None:
        server.should_exit = True
        await serving
    await client.aclose()


# ---------------------------------------------------------------------- scenarios


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def deliveries_run(redis: RedisProcess | None, *, stop_redis: bool = False) -> dict[str, float]:
    """4 workers, 300 jobs, each delivery to a random worker; lateness and fetches per job."""
    from modelslab_fetch import ModelsLab

    with served() as (base_url, simulator, _front):
        url = None if redis is None else redis.url
        with fleet(WORKERS, base_url, url, hooks=True) as workers:
            ports = [w.hook_port for w in workers]
            maker = ModelsLab(
                api_key=KEY,
                base_url=base_url,
                webhook_secret=SECRET,
                webhook_url=f"http://127.0.0.1:{ports[0]}/hooks",
            )
            source = random.Random(24)
            shares: list[list[dict[str, Any]]] = [[] for _ in workers]
            for n in range(FLEET_JOBS):
                fields = maker.webhooks.fields()
                target = source.choice(ports)  # where the load balancer sends it
                hook = fields["webhook"].replace(f":{ports[0]}/", f":{target}/")
                response = simulator.queue_response(
                    "images",
                    ready_in=source.uniform(*READY_IN),
                    webhook=hook,
                    track_id=fields["track_id"],
                )
                shares[n % len(workers)].append(response)
            maker.close()
            for worker, share in zip(workers, shares, strict=True):
                worker.give({"kind": "wait_for_many", "responses": share})
            if stop_redis and redis is not None:
                time.sleep(2.0)
                redis.stop()
                time.sleep(5.0)
                redis.start()
            results = [worker.result() for worker in workers]
    for r in results:
        for error in r.get("errors", ()):
            print("worker error:", error, file=sys.stderr)
    done = {rid: at for r in results for rid, at in r["done"].items()}
    late = [done[rid] - job.ready_at for rid, job in simulator.jobs.items() if rid in done]
    polls = simulator.polls(list(simulator.jobs))
    return {
        "finished": len(done),
        "failed": sum(r["failed"] for r in results),
        "fetches_per_job": sum(polls.values()) / len(simulator.jobs),
        "p50": statistics.median(late),
        "p95": quantile(late, 0.95),
        "worst": max(late),
    }


def pause_run(redis: RedisProcess | None) -> dict[str, float]:
    """All workers fetch; one gets a queue-limit 429 (retry_after 3): what the others send."""
    with served(auto_ready=True) as (base_url, _simulator, front):
        url = None if redis is None else redis.url
        with fleet(WORKERS, base_url, url, hooks=False) as workers:
            for worker in workers:
                worker.give({"kind": "fetch", "seconds": 7.0, "ids": ["1", "2", "3"]})
            time.sleep(2.0)
            front.limit["w0"] = PAUSE
            for worker in workers:
                worker.result()
    assert front.limited_at is not None
    start, end = front.limited_at, front.limited_at + PAUSE
    others = [(at, w) for at, w in front.log if w != "w0"]
    during = sum(1 for at, _ in others if start + 0.05 <= at < end)
    resumed = [
        min((at for at, w in others if w == name and at >= end), default=end + 99)
        for name in {w for _, w in others}
    ]
    return {
        "during": during,
        "resume": max(resumed) - end,
        "before_per_s": sum(1 for at, _ in others if start - 1 <= at < start),
    }


def same_ids_run(redis: RedisProcess | None, workers_count: int) -> float:
    """`workers_count` workers each wait on the same 100 ids: fetches per id."""
    with served() as (base_url, simulator, _front):
        url = None if redis is None else redis.url
        with fleet(workers_count, base_url, url, hooks=False) as workers:
            source = random.Random(8)
            ids = [simulator.queue(ready_in=source.uniform(*READY_IN)) for _ in range(SAME_IDS)]
            for worker in workers:
                worker.give({"kind": "wait_many", "ids": ids})
            results = [worker.result() for worker in workers]
    assert all(len(r["done"]) == SAME_IDS and not r["failed"] for r in results)
    return sum(simulator.polls(ids).values()) / SAME_IDS


def fleet_report() -> str:
    """Run every fleet scenario side by side; return the markdown section."""
    redis = RedisProcess()
    redis.start()
    try:
        shared = deliveries_run(redis)
        alone = deliveries_run(None)
        pause_shared = pause_run(redis)
        pause_alone = pause_run(None)
        single = same_ids_run(None, 1)
        eight_shared = same_ids_run(redis, SAME_WORKERS)
        eight_alone = same_ids_run(None, SAME_WORKERS)
        stopped = deliveries_run(redis, stop_redis=True)
    finally:
        redis.stop()
    ratio = eight_shared / single

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        f"### A fleet of workers (issue 24: {WORKERS} worker processes, Redis on loopback)",
        "",
        f"{FLEET_JOBS} jobs ready in {READY_IN[0]:.0f}-{READY_IN[1]:.0f} s collected with "
        f"`wait_for_many`, each worker its share; every delivery POSTed (20-200 ms after "
        "readiness) to a random worker's receiver, so 3 in 4 land on a worker that does not "
        "wait for them. Lateness is from readiness to the outcome.",
        "",
        "| run | fetches per job | lateness median | p95 | worst | jobs finished |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in (
        ("with Redis", shared),
        ("without Redis", alone),
        ("with Redis, stopped 5 s mid-run", stopped),
    ):
        lines.append(
            f"| {name} | {row['fetches_per_job']:.2f} | {row['p50']:.2f} s | {row['p95']:.2f} s "
            f"| {row['worst']:.2f} s | {int(row['finished'])}/{FLEET_JOBS} |"
        )
    lines += [
        "",
        f"A queue-limit 429 with `retry_after: {PAUSE:.0f}` answered to one of {WORKERS} workers "
        "fetching ~60 requests a second each; requests of the other workers during those "
        f"{PAUSE:.0f} s, counted by the simulator:",
        "",
        "| run | others' requests in the pause | others' last to resume after it | others' requests/s before |",
        "|---|---:|---:|---:|",
        f"| with Redis | {int(pause_shared['during'])} | {pause_shared['resume']:.2f} s | {int(pause_shared['before_per_s'])} |",
        f"| without Redis | {int(pause_alone['during'])} | {pause_alone['resume']:.2f} s | {int(pause_alone['before_per_s'])} |",
        "",
        f"{SAME_WORKERS} workers waiting on the same {SAME_IDS} ids: fetches per id "
        f"**{eight_shared:.2f}** with Redis, {eight_alone:.2f} without, against "
        f"{single:.2f} for one worker alone.",
        "",
        "| goal | measured | target | |",
        "|---|---:|---:|---|",
        f"| lateness p95, deliveries to random workers | {shared['p95']:.2f} s | <= 0.3 s | {met(shared['p95'] <= 0.3)} |",
        f"| fetches per job, same run | {shared['fetches_per_job']:.2f} | <= 1.2 | {met(shared['fetches_per_job'] <= 1.2)} |",
        f"| other workers' requests in a 3 s pause | {int(pause_shared['during'])} | 0 | {met(pause_shared['during'] == 0)} |",
        f"| all resume within a second of its end | {pause_shared['resume']:.2f} s | <= 1 s | {met(pause_shared['resume'] <= 1)} |",
        f"| 8 workers on the same ids vs one alone | {ratio:.2f}x | <= 1.2x | {met(ratio <= 1.2)} |",
        f"| Redis stopped 5 s: every job finishes | {int(stopped['finished'])}/{FLEET_JOBS} | all | {met(stopped['finished'] == FLEET_JOBS and not stopped['failed'])} |",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the fleet part of `path` (between the fleet markers) with `section`."""
    start, end = "<!-- fleet-bench:start -->", "<!-- fleet-bench:end -->"
    text = path.read_text() if path.exists() else ""
    if start not in text:
        text += f"\n{start}\n{end}\n"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{start}\n{section}\n{end}{after}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker_run(json.loads(sys.argv[2])))
    else:
        print(fleet_report())
