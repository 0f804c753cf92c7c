"""The key, the webhook secret and webhook tokens never reach Redis.

A run that uses everything the fleet stores or publishes (a delivery whose `meta`
echoes the webhook URL with its token, shared polls, a pause, the rate budget) is
watched with MONITOR, which sees every command any client sends; then every key left
is read. Neither holds a secret.
"""

from __future__ import annotations

import threading

import anyio
import redis

from tests.conftest import API_KEY
from tests.fleet_support import SECRET, FleetAPI, deliver, fleet_api, hooked
from tests.redis_server import RedisServer, redis_server

__all__ = ["fleet_api", "redis_server"]


class Monitor:
    """Every command Redis receives, as text, from a MONITOR connection on a thread."""

    def __init__(self, server: RedisServer) -> None:
        self.lines: list[str] = []
        self._client = redis.Redis(host="127.0.0.1", port=server.port)
        self._monitor = self._client.monitor()  # type: ignore[no-untyped-call]
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for command in self._monitor.listen():
                self.lines.append(str(command["command"]))
        except Exception:
            return

    def close(self) -> None:
        self._monitor.__exit__()
        self._client.close()


async def test_no_secret_reaches_redis(redis_server: RedisServer, fleet_api: FleetAPI) -> None:
    monitor = Monitor(redis_server)
    url = redis_server.url
    try:
        async with (
            hooked("a", url, max_requests_per_second=50) as a,
            hooked("b", url, max_requests_per_second=50) as b,
        ):
            fleet_api.stated_eta = 30.0
            fleet_api.queue("job-1", 0.0)
            fleet_api.queue("job-2", 0.3)
            tokens = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.images.wait, "job-1")
                tg.start_soon(a.images.wait, "job-2")
                tg.start_soon(b.images.wait, "job-2")
                await anyio.sleep(0.3)
                tokens.append(deliver(a, "job-1"))  # meta echoes the URL with its token
                tokens.append(deliver(b, "job-2"))
            fleet_api.rate_limit_next["a"] = 0.2
            await a.images.fetch("job-1")  # a pause, published
            await anyio.sleep(0.3)
    finally:
        monitor.close()
    stored = repr(redis_server.contents())
    said = "\n".join(monitor.lines)
    # The run did use Redis: deliveries, shared results, leases, the pause, the budget.
    for part in ("delivery:job-1", "result:", "lease:", "pause", "rate", "PUBLISH"):
        assert part in said, part
    assert "job-1" in stored
    for secret in (API_KEY, SECRET, *tokens):
        assert secret not in said
        assert secret not in stored
