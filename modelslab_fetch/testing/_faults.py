"""Faults the simulator injects on demand: latency, stalls, 5xx, edge pages, 429s, cut bodies."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate

__all__ = ["FaultPlan", "Faults", "InjectedFault"]

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


@dataclass(frozen=True)
class InjectedFault:
    """One injected failure: what to send instead of the real answer."""

    kind: str
    """"5xx", "edge page", "429", "truncated" or "stall"."""
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class FaultPlan:
    """Decides, deterministically for a seed, which fetch meets which fault."""

    def __init__(self, faults: Faults, *, seed: int = 0) -> None:
        self.faults = faults
        self._random = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._count = 0
        self._burst_left = 0
        self._lock = threading.Lock()
        self.injected: Counter[int] = Counter()
        """How many faults were answered with each HTTP status."""
        self.kinds: Counter[str] = Counter()
        """How many faults of each kind were injected."""

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
