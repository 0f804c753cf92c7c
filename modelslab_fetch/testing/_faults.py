"""Faults the simulator injects on demand, the generic ones and ModelsLab's own.

Generic: latency, stalls, 5xx, edge pages, 429s, cut bodies. ModelsLab's: its queue
limit and spam filter, account errors, odd but valid body shapes, and webhook
deliveries lost, duplicated or late.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal, get_args

from ._simulator import INVALID_KEY_401_BODY, INVALID_KEY_BODY
from ._webhooks import DEFAULT_WEBHOOK_DELAY, MAX_WEBHOOK_TIMEOUT, WEBHOOK_TIMEOUT

__all__ = ["AccountRefusal", "FaultPlan", "Faults", "InjectedFault", "QueueLimitWait"]

AccountRefusal = Literal["no_credits", "plan", "bad_key", "bad_key_legacy"]
"""An account-level refusal: no credit (402), the plan (403), a bad key (401, or the
legacy HTTP 200 "Invalid Api Key" body)."""

QueueLimitWait = Literal["body", "reset_header", "both", "mixed"]
"""Where a queue-limit 429 says how long to wait: the body's `retry_after`, an
`X-RateLimit-Reset` header (epoch seconds), both, or one of those three at random."""

# What ModelsLab's docs show for each account-level refusal: (HTTP status, body, kind).
_ACCOUNT_ERRORS: dict[str, tuple[int, dict[str, Any], str]] = {
    "no_credits": (
        402,
        {
            "status": "error",
            "message": "Insufficient credits. Please add more credits to continue.",
        },
        "no credits",
    ),
    "plan": (
        403,
        {"status": "error", "message": "This feature requires a premium subscription"},
        "plan",
    ),
    "bad_key": (401, INVALID_KEY_401_BODY, "bad key"),
    "bad_key_legacy": (200, INVALID_KEY_BODY, "bad key (HTTP 200)"),
}

EDGE_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} | modelslab.com | Cloudflare</title></head>"
    "<body><h1>Error {status}</h1><p>The origin web server is not responding.</p></body></html>"
)


@dataclass(frozen=True)
class Faults:
    """What can go wrong with each fetch, and how often (rates are shares, 0 to 1).

    Attributes:
        latency: Seconds (low, high) every answer is delayed by, drawn uniformly.
        error_rate: Share of fetches answered with a JSON 500/502/503/504.
        edge_page_rate: Share answered with an HTML edge page (502, 503, 520-524).
        truncate_rate: Share whose body is cut short (more promised than sent).
        stall_rate: Share that stall for `stall` seconds before answering (timeouts).
        stall: How long a stalled answer takes.
        rate_limit_rate: Share answered with 429, besides bursts.
        rate_limit_every: Every this many fetches, a 429 burst starts (0: never).
        rate_limit_burst: How many fetches in a row a burst answers with 429.
        retry_after: The `Retry-After` seconds a 429 carries (None: no header).
        vary_retry_after: Send `Retry-After` as seconds, as an HTTP date, or not at all,
            at random (with `retry_after` as the delay).
        queue_limit_rate: Share answered as ModelsLab answers a full queue: HTTP 429,
            `{"status": "error", "message": "Rate limit exceeded. Maximum 5 queued
            requests allowed.", "retry_after": N}`, and no `Retry-After` header.
        queue_limit: The queue size the queue-limit message names (5, 10 or 15 by plan).
        queue_limit_wait: The seconds a queue-limit 429 asks for (N above).
        queue_limit_wait_in: Where the queue-limit 429 says so (see `QueueLimitWait`).
        spam_filter_rate: Share answered as the older spam filter does: HTTP 200,
            `{"status": "error", "message": "Rate limit exceeded", "tips": "Rate limit
            exceeded, please wait for N seconds and try again"}`, now and then with the
            field spelt `messege`.
        spam_filter_wait: The whole seconds the spam filter's `tips` names (N above).
        account_error: Refuse every fetch after the first `account_error_after` as the
            account's state makes ModelsLab refuse it (see `AccountRefusal`); None: never.
        account_error_after: How many fetches are answered normally first.
        odd_shape_rate: Share of real answers (processing, success, failed) given odd
            but valid shapes: `output` as one URL string or `""`, `proxy_links` as
            `{"0": url}` or null, `future_links` null, `id` as a numeric string or `""`,
            `eta` as a numeric string, extra `tip_1`, `webhook_status`, `fetch_result`.
        webhook_drop_rate: Share of webhook deliveries never sent (ModelsLab's are best
            effort: a lost one is found by fetching).
        webhook_duplicate_rate: Share of webhook deliveries sent `webhook_copies` times
            ("webhooks may be sent multiple times").
        webhook_copies: How many times a duplicated delivery is sent (2 or more), each
            copy after its own delay.
        webhook_delay: Seconds (low, high) from a job's readiness to each delivery of it,
            drawn uniformly; 20-200 ms by default.
        webhook_timeout: Seconds a receiver has to answer a delivery before it counts as
            failed (ModelsLab's limit: 30). Deliveries are never retried.

    Which delivery is dropped, duplicated or late depends only on the seed and the job's
    id, not on timing.

    Raises:
        ValueError: A rate outside 0..1, a negative wait or count, an unknown choice.

    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    edge_page_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall: float = 5.0
    rate_limit_rate: float = 0.0
    rate_limit_every: int = 0
    rate_limit_burst: int = 3
    retry_after: float | None = 1.0
    vary_retry_after: bool = False
    queue_limit_rate: float = 0.0
    queue_limit: int = 5
    queue_limit_wait: float = 1.0
    queue_limit_wait_in: QueueLimitWait = "body"
    spam_filter_rate: float = 0.0
    spam_filter_wait: int = 1
    account_error: AccountRefusal | None = None
    account_error_after: int = 0
    odd_shape_rate: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_duplicate_rate: float = 0.0
    webhook_copies: int = 2
    webhook_delay: tuple[float, float] = DEFAULT_WEBHOOK_DELAY
    webhook_timeout: float = WEBHOOK_TIMEOUT

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "edge_page_rate",
            "truncate_rate",
            "stall_rate",
            "rate_limit_rate",
            "queue_limit_rate",
            "spam_filter_rate",
            "odd_shape_rate",
            "webhook_drop_rate",
            "webhook_duplicate_rate",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                what = "webhook deliveries" if name.startswith("webhook") else "fetches"
                raise ValueError(
                    f"Faults.{name} is a share of {what}, from 0 to 1 (0.05 is 5%), not {rate!r}"
                )
        self._check_webhook_settings()
        for name in ("queue_limit_wait", "spam_filter_wait", "account_error_after", "stall"):
            if getattr(self, name) < 0:
                raise ValueError(f"Faults.{name} cannot be negative: {getattr(self, name)!r}")
        if self.account_error is not None and self.account_error not in _ACCOUNT_ERRORS:
            raise ValueError(
                f"Faults.account_error must be one of {sorted(_ACCOUNT_ERRORS)} or None, "
                f"not {self.account_error!r}"
            )
        if self.queue_limit_wait_in not in get_args(QueueLimitWait):
            raise ValueError(
                f"Faults.queue_limit_wait_in must be one of {list(get_args(QueueLimitWait))}, "
                f"not {self.queue_limit_wait_in!r}"
            )

    def _check_webhook_settings(self) -> None:
        copies = self.webhook_copies
        if isinstance(copies, bool) or not isinstance(copies, int) or not 2 <= copies <= 10:
            raise ValueError(
                f"Faults.webhook_copies is how many times a duplicated delivery is sent, "
                f"from 2 to 10, not {copies!r}"
            )
        delay = self.webhook_delay
        if (
            not isinstance(delay, tuple)
            or len(delay) != 2
            or not all(_seconds_value(d) for d in delay)
            or not 0.0 <= delay[0] <= delay[1] <= 86_400.0
        ):
            raise ValueError(
                "Faults.webhook_delay is (low, high) seconds after readiness, with "
                f"0 <= low <= high <= 86400, not {delay!r}"
            )
        timeout = self.webhook_timeout
        if not (math.isfinite(timeout) and 0.0 < timeout <= MAX_WEBHOOK_TIMEOUT):
            raise ValueError(
                f"Faults.webhook_timeout is the seconds a receiver has to answer, more than "
                f"0 and at most {MAX_WEBHOOK_TIMEOUT:g} (ModelsLab's is 30), not {timeout!r}"
            )


@dataclass(frozen=True)
class InjectedFault:
    """One injected failure: what to send instead of the real answer."""

    kind: str
    """"5xx", "edge page", "429", "truncated", "stall", "queue limit", "spam filter",
    "no credits", "plan", "bad key" or "bad key (HTTP 200)"."""
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class FaultPlan:
    """Decides, deterministically for a seed, which fetch meets which fault."""

    def __init__(self, faults: Faults, *, seed: int = 0) -> None:
        self.faults = faults
        self._random = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        # Shapes draw from their own stream, so turning them on leaves which fetch meets
        # which fault unchanged for a seed.
        self._shapes = random.Random(f"{seed}/shapes")  # noqa: S311 - simulation
        self._count = 0
        self._burst_left = 0
        self._lock = threading.Lock()
        self.injected: Counter[int] = Counter()
        """How many faults were answered with each HTTP status."""
        self.kinds: Counter[str] = Counter()
        """How many faults of each kind were injected ("odd shape" counts reshaped answers)."""

    def __repr__(self) -> str:
        return f"FaultPlan({self.faults!r})"

    def next(self) -> tuple[float, InjectedFault | None]:
        """The delay for the next fetch, and the fault to answer it with, if any."""
        with self._lock:
            self._count += 1
            faults = self.faults
            delay = self._random.uniform(*faults.latency) if faults.latency[1] > 0 else 0.0
            fault = self._choose()
            if fault is not None:
                self.kinds[fault.kind] += 1
                if fault.kind == "stall":
                    delay += faults.stall
                else:
                    self.injected[fault.status] += 1
            return delay, fault

    def _choose(self) -> InjectedFault | None:
        faults = self.faults
        if faults.account_error is not None and self._count > faults.account_error_after:
            return self._account_error(faults.account_error)
        if faults.rate_limit_every and self._count % faults.rate_limit_every == 0:
            self._burst_left = faults.rate_limit_burst
        if self._burst_left > 0:
            self._burst_left -= 1
            return self._rate_limited()
        roll = self._random.random()
        for rate, make in (
            (faults.error_rate, self._server_error),
            (faults.edge_page_rate, self._edge_page),
            (faults.truncate_rate, self._truncated),
            (faults.stall_rate, self._stalled),
            (faults.rate_limit_rate, self._rate_limited),
            (faults.queue_limit_rate, self._queue_limited),
            (faults.spam_filter_rate, self._spam_filtered),
        ):
            if roll < rate:
                return make()
            roll -= rate
        return None

    def _server_error(self) -> InjectedFault:
        status = self._random.choice((500, 502, 503, 504))
        return InjectedFault("5xx", status, b'{"message": "Server Error"}', "application/json")

    def _edge_page(self) -> InjectedFault:
        status = self._random.choice((502, 503, 520, 521, 522, 523, 524))
        page = EDGE_PAGE.format(status=status).encode()
        return InjectedFault("edge page", status, page, "text/html; charset=UTF-8")

    def _truncated(self) -> InjectedFault:
        return InjectedFault(
            "truncated", 200, b'{"status": "success", "output": ["', "application/json"
        )

    def _stalled(self) -> InjectedFault:
        return InjectedFault("stall", 0, b"", "")

    def _rate_limited(self) -> InjectedFault:
        faults = self.faults
        headers: tuple[tuple[str, str], ...] = ()
        if faults.retry_after is not None:
            style = (
                self._random.choice(("seconds", "date", "none"))
                if faults.vary_retry_after
                else "seconds"
            )
            if style == "seconds":
                headers = (("retry-after", f"{faults.retry_after:g}"),)
            elif style == "date":
                # HTTP dates have whole seconds: round up, so the wait is never shorter.
                when = formatdate(time.time() + faults.retry_after + 1, usegmt=True)
                headers = (("retry-after", when),)
        return InjectedFault(
            "429", 429, b'{"message": "Too Many Requests"}', "application/json", headers
        )

    def _queue_limited(self) -> InjectedFault:
        # ModelsLab's documented 429: the wait is in the body, no Retry-After header.
        faults = self.faults
        where = faults.queue_limit_wait_in
        if where == "mixed":
            where = self._random.choice(("body", "reset_header", "both"))
        body: dict[str, Any] = {
            "status": "error",
            "message": (
                f"Rate limit exceeded. Maximum {faults.queue_limit} queued requests allowed."
            ),
        }
        headers: tuple[tuple[str, str], ...] = ()
        if where in ("body", "both"):
            body["retry_after"] = _seconds(faults.queue_limit_wait)
        if where in ("reset_header", "both"):
            # An absolute epoch second, as ModelsLab's own CLI reads it: round up, so the
            # reset is never sooner than the wait.
            reset = math.ceil(time.time() + faults.queue_limit_wait)
            headers = (("x-ratelimit-reset", str(reset)),)
        return InjectedFault("queue limit", 429, _json(body), "application/json", headers)

    def _spam_filtered(self) -> InjectedFault:
        # The older API's answer to a request repeated too often: HTTP 200, "ask later".
        wait = self.faults.spam_filter_wait
        message_field = "messege" if self._random.random() < 0.3 else "message"
        body = {
            "status": "error",
            message_field: "Rate limit exceeded",
            "tips": f"Rate limit exceeded, please wait for {wait} seconds and try again",
        }
        return InjectedFault("spam filter", 200, _json(body), "application/json")

    def _account_error(self, which: str) -> InjectedFault:
        status, body, kind = _ACCOUNT_ERRORS[which]
        return InjectedFault(kind, status, _json(body), "application/json")

    def reshape(self, body: dict[str, Any], *, fetch_url: str = "") -> dict[str, Any]:
        """`body` as is, or (a share `odd_shape_rate` of the time) in odd but valid shapes.

        Only real answers (processing, success, failed) are reshaped; each reshaped one
        gets at least one of the variations its status allows, and is counted as an
        "odd shape" in `kinds`. Every URL stays a URL the simulator serves.
        """
        rate = self.faults.odd_shape_rate
        status = body.get("status")
        if rate <= 0 or status not in ("processing", "success", "failed"):
            return body
        with self._lock:
            if self._shapes.random() >= rate:
                return body
            variations = _VARIATIONS[status]
            chosen = [v for v in variations if self._shapes.random() < 0.5]
            if not chosen:
                chosen = [self._shapes.choice(variations)]
            odd = dict(body)
            for variation in chosen:
                variation(odd, self._shapes, fetch_url)
            if odd == body:  # the chosen ones had nothing to change (e.g. several images)
                _extra_fields(odd, self._shapes, fetch_url)
            self.kinds["odd shape"] += 1
            return odd


def _seconds_value(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _seconds(value: float) -> int | float:
    # The docs show whole seconds as JSON integers; keep fractions for fast tests.
    return int(value) if float(value).is_integer() else value


# The odd but valid shapes published responses show, by what each changes.
_Variation = Callable[[dict[str, Any], random.Random, str], None]


def _one_url_output(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    # Some endpoints (super resolution, image editing) send their one image as a string.
    output = body.get("output")
    if isinstance(output, list) and len(output) == 1:
        body["output"] = output[0]


def _indexed_proxy_links(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    links = body.get("proxy_links")
    if isinstance(links, list) and rng.random() < 0.5:
        body["proxy_links"] = {str(n): url for n, url in enumerate(links)}
    else:
        body["proxy_links"] = None


def _numeric_string_id(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    body["id"] = str(body.get("id", ""))


def _empty_id(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    body["id"] = ""


def _empty_output(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    body["output"] = ""


def _no_future_links(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    body["future_links"] = None


def _eta_as_text(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    eta = body.get("eta")
    if isinstance(eta, int | float):
        body["eta"] = f"{eta:.2f}"


def _extra_fields(body: dict[str, Any], rng: random.Random, fetch_url: str) -> None:
    body["tip_1"] = "Upgrade your plan to get faster generations"
    body["webhook_status"] = body.get("webhook_status") or ""
    body["fetch_result"] = body.get("fetch_result") or fetch_url


_VARIATIONS: dict[str, list[_Variation]] = {
    "success": [_one_url_output, _indexed_proxy_links, _numeric_string_id, _extra_fields],
    "processing": [
        _empty_output,
        _no_future_links,
        _eta_as_text,
        _numeric_string_id,
        _extra_fields,
    ],
    "failed": [_empty_id, _empty_output, _extra_fields],
}
