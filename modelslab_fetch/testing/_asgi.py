"""The simulator as an ASGI app: ModelsLab's fetch routes, plus a small control API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from .. import endpoint_table
from ._faults import FaultPlan, Faults
from ._limits import (
    MAX_BODY_BYTES,
    MAX_REQUEST_ID_CHARS,
    Refused,
    json_object_of,
    ready_in_of,
    share_of,
    webhooks_of,
)
from ._media import KIND_FILES, file_of_kind
from ._simulator import ETA_ERROR_MODELS, NOT_FOUND_BODY, Simulator

__all__ = ["SimulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_FILE_ROUTE = re.compile(
    r"^/generations/(?P<id>[^/]+)-(?P<n>\d{1,6})\.(?P<ext>"
    + "|".join(ext for ext, _ in KIND_FILES.values())
    + ")$"
)


def fetch_routes() -> list[tuple[re.Pattern[str], str]]:
    """A route per path of every endpoint in the table, with the output kind it serves.

    A body-id endpoint also answers the id in its path (`/v6/images/fetch/{id}`), the
    form generation responses name and ModelsLab's own SDKs post to.
    """
    routes = []
    for row in endpoint_table().values():
        for template in (row.path_template, *row.aliases):
            before, found, after = template.partition("{id}")
            if found:
                pattern = re.escape(before) + r"(?P<id>[^/]+)" + re.escape(after)
            else:
                pattern = re.escape(template.rstrip("/")) + r"(?:/(?P<id>[^/]+))?/?"
            routes.append((re.compile(f"^/api{pattern}$"), row.output))
    return routes


class SimulatorApp:
    """Serves a `Simulator` over HTTP (any ASGI server, or `httpx.ASGITransport`).

    It serves every endpoint of the table. Besides the fetch routes, it serves each job's
    outputs at its output URLs, files of its endpoint's kind (`GET /generations/{id}-{n}.png`,
    `.mp4`, `.wav`, `.glb`, `.txt`), and injects `faults` into fetches (and
    reshapes their answers, when `Faults.odd_shape_rate` asks for it).
    Control routes, for benchmarks and demos: `POST /_simulator/jobs`
    `{"count", "ready_in": [lo, hi], "failure_rate", "eta_error_model"}` queues jobs
    (`eta_error_model`, optional: `"per_answer"` or `"per_job"`) and returns their ids
    and ready times (epoch seconds); `POST /_simulator/responses` `{"endpoint": "video",
    "count", "ready_in": [lo, hi]}` queues jobs on an endpoint of the table and returns
    their generation responses (`fetch_result` pointing at this server);
    `GET /_simulator/stats` returns polls per job;
    `GET /_simulator/faults` returns the faults injected so far, by kind and by HTTP status.

    Webhooks: both queueing routes take `"webhook"` (a loopback URL every job queued
    delivers to) or `"webhooks"` (`[{"webhook", "track_id"}, ...]`, one per job, which
    sets `count`), as a generation request carries them; each job's final record is
    POSTed there when it ends, with the `webhook_*` settings of `faults`.
    `GET /_simulator/webhooks` counts what became of the deliveries (`WebhookStats`).
    Every route takes bounded requests only (a 64 KiB body, 10,000 jobs a request,
    50,000 held, `ready_in` within a day, shares within 0..1: see `_limits`); anything
    else is answered 400 or 413 with the bound named, before any work is done.
    """

    def __init__(
        self, simulator: Simulator, *, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.simulator = simulator
        self._seed = seed
        self.faults = FaultPlan(faults or Faults(), seed=seed)
        """What is injected, and counts of what was (`kinds`, `injected`)."""
        simulator.deliver_with(self.faults.faults, seed=seed)
        self.routes = fetch_routes()
        """The fetch routes served, from the endpoint table when the app was made."""

    def __repr__(self) -> str:
        return f"SimulatorApp({self.simulator!r})"

    def use_faults(self, faults: Faults) -> None:
        """Inject `faults` from the next request on; the counts of `faults` start afresh.

        Their `webhook_*` settings apply to the jobs that become ready from then on.
        """
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, not {type(faults).__name__}")
        self.faults = FaultPlan(faults, seed=self._seed)
        self.simulator.deliver_with(faults, seed=self._seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        body = await _read_body(receive, MAX_BODY_BYTES)
        if body is None:
            message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
            await _send(send, 413, _error_json(message), "application/json")
            return
        path, method = scope["path"], scope["method"]
        image = _FILE_ROUTE.match(path)
        if image is not None and method in ("GET", "HEAD"):
            await self._send_file(send, image.group("id"), int(image.group("n")), image["ext"])
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

    async def _send_file(self, send: Send, request_id: str, number: int, ext: str) -> None:
        job = self.simulator.jobs.get(request_id)
        if job is None or job.final != "success" or number >= job.images:
            await _send(send, 404, b'{"message": "Not Found"}', "application/json")
            return
        file_ext, content_type = KIND_FILES[job.kind]
        if ext != file_ext:
            await _send(send, 404, b'{"message": "Not Found"}', "application/json")
            return
        seed = int(job.meta.get("seed", 0)) + number
        await _send(send, 200, file_of_kind(job.kind, seed), content_type)

    def _route(self, method: str, path: str, body: bytes, scope: Scope) -> tuple[int, Any]:
        for pattern, kind in self.routes:
            match = pattern.match(path)
            if match is not None:
                if method != "POST":
                    return 405, {"message": "Method Not Allowed"}
                path_id = match.group("id")
                return self._fetch(path_id, body, f"http://{_host(scope)}{path}", kind)
        return self._control(method, path, body, scope)

    def _control(self, method: str, path: str, body: bytes, scope: Scope) -> tuple[int, Any]:
        try:
            if path == "/_simulator/jobs" and method == "POST":
                return 200, self._queue_jobs(json_object_of(body))
            if path == "/_simulator/responses" and method == "POST":
                spec = json_object_of(body)
                return self._queue_responses(spec, f"http://{_host(scope)}/api")
        except Refused as refused:
            return refused.status, {"status": "error", "message": refused.message}
        reports: dict[str, Callable[[], Any]] = {
            "/_simulator/stats": self._stats,
            "/_simulator/faults": self._faults_met,
            "/_simulator/webhooks": self._webhooks_met,
        }
        if method == "GET" and path in reports:
            return 200, reports[path]()
        return 404, {"message": "Not Found"}

    def _webhooks_met(self) -> dict[str, int]:
        return self.simulator.webhook_stats.as_dict()

    def _faults_met(self) -> dict[str, Any]:
        return {
            "kinds": dict(self.faults.kinds),
            "injected": {str(status): n for status, n in self.faults.injected.items()},
        }

    def _fetch(
        self, path_id: str | None, body: bytes, fetch_url: str, kind: str = "images"
    ) -> tuple[int, Any]:
        try:
            data: object = json_object_of(body)
        except Refused:
            data = None
        if not isinstance(data, dict):
            return 400, {"status": "error", "message": "Invalid JSON body"}
        request_id = path_id if path_id is not None else data.get("request_id")
        if request_id is None:
            return 200, {"status": "error", "message": {"request_id": ["required"]}}
        if len(str(request_id)) > MAX_REQUEST_ID_CHARS:
            # Never looked up, never made a job of (auto_ready): as the API, "not found".
            return 200, dict(NOT_FOUND_BODY)
        status, answer = self.simulator.answer(
            str(request_id), data.get("key"), fetch_url=fetch_url, kind=kind
        )
        return status, self.faults.reshape(answer, fetch_url=fetch_url)

    def _queue_jobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        # Every value checked before any job is made (see _limits): a request either
        # queues all it asks for, or nothing.
        targets = webhooks_of(spec, held=len(self.simulator.jobs))
        count = len(targets)
        ready_in = ready_in_of(spec, (1.0, 8.0))
        failure_rate = share_of(spec, "failure_rate")
        model = spec.get("eta_error_model")
        if model is not None and model not in ETA_ERROR_MODELS:
            raise Refused(400, f"eta_error_model must be one of {', '.join(ETA_ERROR_MODELS)}")
        ids = self.simulator.queue_many(
            count,
            ready_in=ready_in,
            failure_rate=failure_rate,
            eta_error_model=model,
            webhooks=[{"webhook": url, "track_id": track_id} for url, track_id in targets],
        )
        offset = time.time() - self.simulator.clock()
        jobs = self.simulator.jobs
        return {"ids": ids, "ready_at": {rid: jobs[rid].ready_at + offset for rid in ids}}

    def _queue_responses(self, spec: dict[str, Any], base_url: str) -> tuple[int, Any]:
        endpoint = spec.get("endpoint", "images")
        if not isinstance(endpoint, str) or endpoint not in endpoint_table():
            names = ", ".join(endpoint_table())
            raise Refused(400, f"endpoint must name an endpoint of the table: one of {names}")
        targets = webhooks_of(spec, held=len(self.simulator.jobs))
        low, high = ready_in_of(spec, (1.0, 8.0))
        responses = [
            self.simulator.queue_response(
                endpoint,
                ready_in=self.simulator.uniform(low, high),
                base_url=base_url,
                webhook=url,
                track_id=track_id,
            )
            for url, track_id in targets
        ]
        return 200, {"responses": responses}

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


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past `limit` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error_json(message: str) -> bytes:
    return json.dumps({"status": "error", "message": message}).encode()


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
