"""When is a job ready? An estimate learnt from every answer about it, free of any clock.

Each `processing` answer says the job was not ready then, and should be about `eta` later;
within a relative error `band` every answer narrows an interval holding the ready time.
Two answers also give the rate at which `eta` falls (a server off by the same factor each
time); that extrapolation is trusted only inside the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ReadinessEstimate"]


@dataclass
class _Eta:
    at: float
    eta: float


class ReadinessEstimate:
    """The interval of ready times a job's answers allow, and when to poll it next.

    `observe(at, eta)` each `processing` answer, then ask `next_poll(now)`; times are on
    any one monotonic scale. The tuning below was chosen with
    `benchmarks/poll_strategies.py` (docs/performance.md), which sets these attributes.
    """

    absolute = 0.05
    """Seconds added on both sides of every `eta`'s interval (rounding, latency)."""
    slack = 0.6
    """Seconds after the interval's early edge the first `eta`'s poll comes."""
    learnt_slack = 0.03
    """Seconds after the ready time learnt from the `eta`'s rate of fall."""
    narrow_slack = 0.2
    """Seconds after the early edge once two answers narrowed it but disagree on a bias."""
    reach = 0.8
    """How far past the early edge a ready time learnt from two answers only may put the
    next poll (until a third answer on the same line confirms the bias)."""
    widen = 1.5
    """The factor the band grows by when an answer contradicts it."""
    learn = True
    """Whether to extrapolate a consistent bias from two answers at all."""

    def __init__(
        self, *, band: float = 0.4, min_interval: float = 0.3, max_interval: float = 30.0
    ) -> None:
        self.band = min(band, _MAX_BAND)
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._etas: list[_Eta] = []
        self._not_before = -math.inf  # the latest time the job was seen unfinished
        self.contradictions = 0
        """How many answers contradicted the band (each widened it)."""

    def __repr__(self) -> str:
        lo, hi = self.interval()
        return f"ReadinessEstimate(band={self.band:.2f}, interval=({lo:.2f}, {hi:.2f}))"

    def observe(self, at: float, eta: float | None) -> None:
        """Record a `processing` answer given at time `at`, with its `eta` if any."""
        self._not_before = max(self._not_before, at)
        if eta is not None and math.isfinite(eta):
            new = _Eta(at, max(eta, 0.0))
            lo, hi = self._bounds([new])
            old_lo, old_hi = self._bounds(self._etas)
            if self._etas and (lo > old_hi or hi < old_lo):
                # Changed its mind beyond the band: the newest estimate is the best informed.
                self._contradicted()
                self._etas.clear()
            self._etas.append(new)
            del self._etas[:-_KEPT]
        while self._etas and self._not_before > self._bounds(self._etas)[1]:
            # Still processing after the late edge: the estimates are worse than assumed.
            self._contradicted()

    def interval(self) -> tuple[float, float]:
        """The earliest and latest ready times every answer so far allows."""
        lo, hi = self._bounds(self._etas)
        return max(lo, self._not_before), hi

    def learnt_ready_at(self) -> float | None:
        """The ready time the `eta`'s fall against the clock implies, if it can be trusted.

        A server off by a factor `k` answers `eta = k * (ready - at)`: `k` is the fall rate.
        """
        if len(self._etas) < 2:
            return None
        first, last = self._etas[-2], self._etas[-1]
        elapsed = last.at - first.at
        if elapsed <= 0:
            return None
        rate = (first.eta - last.eta) / elapsed
        if not (1 - self.band) / _RATE_MARGIN <= rate <= (1 + self.band) * _RATE_MARGIN:
            return None  # not a factor the band allows: noise, not a bias
        return last.at + last.eta / rate

    def next_poll(self, now: float) -> float | None:
        """When to poll next, or None when no `eta` has said anything useful (back off)."""
        if not self._etas:
            return None
        lo, hi = self.interval()
        learnt = self.learnt_ready_at() if self.learn else None
        if learnt is not None:
            learnt = min(max(learnt, lo), hi)
            if not self._confirmed():
                learnt = min(learnt, lo + self.reach)
            wanted = learnt + self.learnt_slack
        elif len(self._etas) >= 2:
            wanted = lo + self.narrow_slack
        else:
            wanted = lo + self.slack
        # Within the band the job is ready by the late edge: no reason to poll later.
        wanted = min(wanted, hi)
        return min(max(wanted, now + self.min_interval), now + self.max_interval)

    def _confirmed(self) -> bool:
        # A third answer on the line through the two before it: a bias, not noise.
        if len(self._etas) < 3:
            return False
        a, b, c = self._etas[-3:]
        if b.at <= a.at:
            return False
        rate = (a.eta - b.eta) / (b.at - a.at)
        return abs(b.eta - rate * (c.at - b.at) - c.eta) <= _COLLINEAR

    def _bounds(self, etas: list[_Eta]) -> tuple[float, float]:
        lo, hi = -math.inf, math.inf
        for seen in etas:
            lo = max(lo, seen.at + seen.eta / (1 + self.band) - self.absolute)
            hi = min(hi, seen.at + seen.eta / (1 - self.band) + self.absolute)
        return lo, hi

    def _contradicted(self) -> None:
        self.contradictions += 1
        self.band = min(self.band * self.widen + 0.05, _MAX_BAND)
        self.absolute = self.absolute * self.widen + 0.05


_KEPT = 16
"""How many `eta` answers are remembered."""
_COLLINEAR = 0.05
"""Seconds a third `eta` may miss the line through two before it (two roundings)."""
_MAX_BAND = 0.95
"""The widest band: an `eta` of 1 s then allows 0.51 s to 20 s."""
_RATE_MARGIN = 1.1
"""How far outside the band a learnt rate may fall and still be believed (rounding)."""
