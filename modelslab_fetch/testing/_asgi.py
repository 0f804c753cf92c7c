"""The simulator as an ASGI app: ModelsLab's fetch routes, plus a small control API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from ._faults import FaultPlan, Faults
from ._png import solid_png
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
_IMAGE_ROUTE = re.compile(r"^/generations/(?P<id>[^/]+)-(?P<n>\d+)\.png$")


class SimulatorApp:
    """Serves a `Simulator` over HTTP (any ASGI server, or `httpx.ASGITransport`).

    Besides the fetch routes, it serves each job's images as real PNGs at its output
    URLs (`GET /generations/{id}-{n}.png`), and injects `faults` into fetches (and
    reshapes their answers, when `Faults.odd_shape_rate` asks for it).
    Control routes, for benchmarks and demos: `POST /_simulator/jobs`
    `{"count", "ready_in": [lo, hi], "failure_rate", "eta_error_model"}` queues jobs
    (`eta_error_model`, optional: `"per_answer"` or `"per_job"`) and returns their ids
    and ready times (epoch seconds); `GET /_simulator/stats` returns polls per job;
    `GET /_simulator/faults` returns the faults injected so far, by kind and by HTTP status.
    """

    def __init__(
        self, simulator: Simulator, *, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.simulator = simulator
        self.faults = FaultPlan(faults or Faults(), seed=seed)

    def __repr__(self) -> str:
        return f"SimulatorApp({self.simulator!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        body = await _read_body(receive)
        path, method = scope["path"], scope["method"]
        image = _IMAGE_ROUTE.match(path)
        if image is not None and method in ("GET", "HEAD"):
            await self._send_image(send, image.group("id"), int(image.group("n")))
            return
        if path.startswith("/api/"):
            delay, fault = self.faults.next()
            if delay:
                await anyio.sleep(delay)
            if fault is not None and fault.kind == "truncated":
                await _send_cut_short(send, fault.body)
                return
            if fault is not None and fault.kind != "stall":  # a stall is just a long delay
                await _send(send, fault.status, fault.body, fault.content_type, fault.headers)
                return
        status, payload = self._route(method, path, body, scope)
        await _send(send, status, json.dumps(payload).encode(), "application/json")

    async def _send_image(self, send: Send, request_id: str, number: int) -> None:
        job = self.simulator.jobs.get(request_id)
        if job is None or job.final != "success" or number >= job.images:
            await _send(send, 404, b'{"message": "Not Found"}', "application/json")
            return
        seed = int(job.meta.get("seed", 0)) + number
        colour = (seed % 200 + 30, seed // 7 % 200 + 30, seed // 49 % 200 + 30)
        await _send(send, 200, solid_png(64, 64, colour), "image/png")

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
        if path == "/_simulator/faults" and method == "GET":
            return 200, {
                "kinds": dict(self.faults.kinds),
                "injected": {str(status): n for status, n in self.faults.injected.items()},
            }
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
        status, answer = self.simulator.answer(
            str(request_id), data.get("key"), fetch_url=fetch_url
        )
        return status, self.faults.reshape(answer, fetch_url=fetch_url)

    def _queue_jobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        low, high = spec.get("ready_in", (1.0, 8.0))
        ids = self.simulator.queue_many(
            int(spec.get("count", 1)),
            ready_in=(float(low), float(high)),
            failure_rate=float(spec.get("failure_rate", 0.0)),
            eta_error_model=spec.get("eta_error_model"),
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


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    raw_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_cut_short(send: Send, body: bytes) -> None:
    # Promise more than is sent: the server then drops the connection mid-body.
    headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise ConnectionAbortedError("simulated: connection lost mid-body")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
