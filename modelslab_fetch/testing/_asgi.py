"""The simulator as an ASGI app: ModelsLab's fetch routes, plus a small control API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._simulator import Simulator

__all__ = ["SimulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_FETCH_ROUTES = [
    (re.compile(r"^/api/v6/images/fetch/?$"), "body"),
    # modelslab-py posts the id in the path of the v6 route; answer it too.
    (re.compile(r"^/api/v6/images/fetch/(?P<id>[^/]+)$"), "path"),
    (re.compile(r"^/api/v1/enterprise/super_resolution/fetch/(?P<id>[^/]+)$"), "path"),
]


class SimulatorApp:
    """Serves a `Simulator` over HTTP (any ASGI server, or `httpx.ASGITransport`).

    Control routes, for benchmarks and demos: `POST /_simulator/jobs`
    `{"count", "ready_in": [lo, hi], "failure_rate"}` queues jobs and returns their ids
    and ready times (epoch seconds); `GET /_simulator/stats` returns polls per job.
    """

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def __repr__(self) -> str:
        return f"SimulatorApp({self.simulator!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        body = await _read_body(receive)
        status, payload = self._route(scope["method"], scope["path"], body, scope)
        await _send_json(send, status, payload)

    def _route(self, method: str, path: str, body: bytes, scope: Scope) -> tuple[int, Any]:
        for pattern, id_in in _FETCH_ROUTES:
            match = pattern.match(path)
            if match is not None:
                if method != "POST":
                    return 405, {"message": "Method Not Allowed"}
                path_id = match.group("id") if id_in == "path" else None
                return self._fetch(path_id, body, f"http://{_host(scope)}{path}")
        if path == "/_simulator/jobs" and method == "POST":
            return 200, self._queue_jobs(json.loads(body or b"{}"))
        if path == "/_simulator/stats" and method == "GET":
            return 200, self._stats()
        return 404, {"message": "Not Found"}

    def _fetch(self, path_id: str | None, body: bytes, fetch_url: str) -> tuple[int, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return 400, {"status": "error", "message": "Invalid JSON body"}
        request_id = path_id if path_id is not None else data.get("request_id")
        if request_id is None:
            return 200, {"status": "error", "message": {"request_id": ["required"]}}
        return 200, self.simulator.fetch(str(request_id), data.get("key"), fetch_url=fetch_url)

    def _queue_jobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        low, high = spec.get("ready_in", (1.0, 8.0))
        ids = self.simulator.queue_many(
            int(spec.get("count", 1)),
            ready_in=(float(low), float(high)),
            failure_rate=float(spec.get("failure_rate", 0.0)),
        )
        offset = time.time() - self.simulator.clock()
        jobs = self.simulator.jobs
        return {"ids": ids, "ready_at": {rid: jobs[rid].ready_at + offset for rid in ids}}

    def _stats(self) -> dict[str, Any]:
        offset = time.time() - self.simulator.clock()
        return {
            rid: {
                "polls": job.polls,
                "ready_at": job.ready_at + offset,
                "first_seen_finished": None
                if job.first_seen_finished is None
                else job.first_seen_finished + offset,
            }
            for rid, job in list(self.simulator.jobs.items())
        }


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1"))
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{server[0]}:{server[1]}"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
