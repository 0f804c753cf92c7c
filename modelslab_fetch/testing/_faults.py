"""Faults the simulator injects on demand: latency, 5xx, HTML edge pages, 429 bursts."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

__all__ = ["FaultPlan", "Faults", "InjectedFault"]

EDGE_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} | modelslab.com | Cloudflare</title></head>"
    "<body><h1>Error {status}</h1><p>The origin web server is not responding.</p></body></html>"
)


@dataclass(frozen=True)
class Faults:
    """What can go wrong with each fetch, and how often (rates are 0 to 1).

    Attributes:
        latency: Seconds (low, high) every answer is delayed by, drawn uniformly.
        error_rate: Share of fetches answered with a JSON 500/502/503.
        edge_page_rate: Share answered with an HTML edge page (502, 503, 520-524).
        rate_limit_every: Every this many fetches, a 429 burst starts (0: never).
        rate_limit_burst: How many fetches in a row a burst answers with 429.
        retry_after: The `Retry-After` seconds a 429 carries (None: no header).

    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    edge_page_rate: float = 0.0
    rate_limit_every: int = 0
    rate_limit_burst: int = 3
    retry_after: float | None = 1.0


@dataclass(frozen=True)
class InjectedFault:
    """One injected failure: the response to send instead of the real answer."""

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
        self.injected: dict[int, int] = {}
        """How many faults of each HTTP status were injected."""

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
                self.injected[fault.status] = self.injected.get(fault.status, 0) + 1
            return delay, fault

    def _choose(self) -> InjectedFault | None:
        faults = self.faults
        if faults.rate_limit_every and self._count % faults.rate_limit_every == 0:
            self._burst_left = faults.rate_limit_burst
        if self._burst_left > 0:
            self._burst_left -= 1
            headers = (
                () if faults.retry_after is None else (("retry-after", f"{faults.retry_after:g}"),)
            )
            return InjectedFault(
                429, b'{"message": "Too Many Requests"}', "application/json", headers
            )
        roll = self._random.random()
        if roll < faults.error_rate:
            status = self._random.choice((500, 502, 503))
            return InjectedFault(status, b'{"message": "Server Error"}', "application/json")
        if roll < faults.error_rate + faults.edge_page_rate:
            status = self._random.choice((502, 503, 520, 521, 522, 523, 524))
            page = EDGE_PAGE.format(status=status).encode()
            return InjectedFault(status, page, "text/html; charset=UTF-8")
        return None
