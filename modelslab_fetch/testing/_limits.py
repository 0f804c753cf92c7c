"""What the simulator's HTTP routes accept: every size, count, duration and number bounded.

`modelslab-fetch simulate` is a test server, but a server all the same: one small request
to its job-queueing route (`{"count": 10000000}`) used to allocate over 100 MB and hold
the event loop for seconds. Each value a request can carry is checked here, and a request
outside the bounds is answered 400 (a value it cannot use) or 413 (more than it takes),
with a message that says which bound and why, before any work is done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ._webhooks import checked_track_id, checked_webhook

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_BRACKETS",
    "MAX_JOBS_HELD",
    "MAX_JOBS_PER_REQUEST",
    "MAX_READY_IN",
    "MAX_REQUEST_ID_CHARS",
    "Refused",
    "count_of",
    "json_object_of",
    "ready_in_of",
    "share_of",
    "webhooks_of",
]

MAX_BODY_BYTES = 64 * 1024
"""The largest request body read: a fetch body is `{"key", "request_id"}`, a control body a
few numbers; 64 KiB is far more than either needs."""

MAX_BRACKETS = 64
"""The most brackets (`[` and `{`) a body may hold: every body the simulator takes is a flat
object of a few values, so a body with more is refused unread, however deep they nest
(nothing then walks a value nested deep enough to exhaust the stack)."""

MAX_JOBS_PER_REQUEST = 10_000
"""The most jobs one control request may queue (about 5 MB and 50 ms of work)."""

MAX_JOBS_HELD = 50_000
"""The most jobs a served simulator holds before control requests are refused: restart it
for more. Keeps memory, and `GET /_simulator/stats` (which lists every job), bounded."""

MAX_READY_IN = 86_400.0
"""The longest a job may take to be ready, in seconds: a day."""

MAX_REQUEST_ID_CHARS = 256
"""The longest request id the simulator looks up (the SDK refuses longer ones too)."""


class Refused(Exception):
    """A request outside the bounds: its HTTP `status` (400 or 413) and what to do instead."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def json_object_of(body: bytes) -> dict[str, Any]:
    """The JSON object a control body holds (an empty body is `{}`), or `Refused` (400)."""
    if not body.strip():
        return {}
    if body.count(b"[") + body.count(b"{") > MAX_BRACKETS:
        raise Refused(
            400,
            f"the body holds more than {MAX_BRACKETS} brackets, so it may be nested more than "
            f"{MAX_BRACKETS} levels deep; send a flat JSON object of a few values",
        )
    try:
        value = json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON; send a JSON object") from None
    if not isinstance(value, dict):
        raise Refused(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(400, f"{name} must be a number, not {json.dumps(value)[:40]}")
    number = float(value)
    if not math.isfinite(number):
        raise Refused(400, f"{name} must be a finite number")
    return number


def count_of(spec: Mapping[str, Any], *, held: int) -> int:
    """The `count` of jobs asked for (default 1), within both job bounds."""
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise Refused(400, f"count must be a whole number, not {json.dumps(count)[:40]}")
    if count < 0:
        raise Refused(400, "count cannot be negative")
    if count > MAX_JOBS_PER_REQUEST:
        raise Refused(
            413,
            f"count {count} is more than one request may queue ({MAX_JOBS_PER_REQUEST}); "
            "send several requests",
        )
    if held + count > MAX_JOBS_HELD:
        raise Refused(
            413,
            f"the simulator holds {held} jobs and keeps at most {MAX_JOBS_HELD}; "
            "restart it to queue more",
        )
    return count


def ready_in_of(spec: Mapping[str, Any], default: tuple[float, float]) -> tuple[float, float]:
    """The `ready_in` range `[low, high]` in seconds, each from 0 to `MAX_READY_IN`."""
    given = spec.get("ready_in", default)
    if not isinstance(given, list | tuple) or len(given) != 2:
        raise Refused(400, "ready_in must be [low, high], in seconds")
    low, high = (_number(value, "ready_in") for value in given)
    if not 0.0 <= low <= high <= MAX_READY_IN:
        raise Refused(
            400, f"ready_in must be [low, high] with 0 <= low <= high <= {MAX_READY_IN:g} s"
        )
    return low, high


def share_of(spec: Mapping[str, Any], name: str) -> float:
    """The share `name` (default 0), from 0 to 1."""
    share = _number(spec.get(name, 0.0), name)
    if not 0.0 <= share <= 1.0:
        raise Refused(400, f"{name} is a share from 0 to 1 (0.05 is 5%)")
    return share


Target = tuple[str | None, str | int | None]


def webhooks_of(spec: Mapping[str, Any], *, held: int) -> list[Target]:
    """Each job's (webhook, track_id), as many as the request queues (see `count_of`).

    `"webhook"` (one loopback URL) is delivered to by every job, with `"track_id"` only
    for a single job; `"webhooks"`, a list of `{"webhook", "track_id"}`, gives each job
    its own and sets the count. A URL beyond loopback is refused (400).
    """
    given = spec.get("webhooks")
    if given is None:
        count = count_of(spec, held=held)
        webhook, track_id = spec.get("webhook"), spec.get("track_id")
        if track_id is not None and count != 1:
            raise Refused(
                400,
                "track_id names one job: to queue several, give webhooks, a list of "
                '{"webhook": URL, "track_id": ID}, one per job',
            )
        try:
            return [(_checked_or_none(webhook), checked_track_id(track_id))] * count
        except ValueError as problem:
            raise Refused(400, str(problem)) from None
    if "webhook" in spec or "track_id" in spec:
        raise Refused(
            400, "give webhook (with track_id, for one job) or webhooks (one per job), not both"
        )
    if not isinstance(given, list):
        raise Refused(400, 'webhooks must be a list of {"webhook": URL, "track_id": ID}')
    count = count_of({"count": len(given)}, held=held)
    if spec.get("count", count) != count:
        raise Refused(400, f"count must match the number of webhooks ({count}), or be left out")
    targets = []
    for n, target in enumerate(given):
        if not isinstance(target, dict) or "webhook" not in target:
            raise Refused(400, f'webhooks[{n}] must be {{"webhook": URL, "track_id": ID}}')
        try:
            url = _checked_or_none(target["webhook"])
            targets.append((url, checked_track_id(target.get("track_id"))))
        except ValueError as problem:
            raise Refused(400, f"webhooks[{n}]: {problem}") from None
    return targets


def _checked_or_none(webhook: object) -> str | None:
    return None if webhook is None else checked_webhook(webhook)
