"""How `fetch()` retries a transient failure: which statuses, how many times, how long between."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import ConfigurationError
from ._numbers import checked_count, checked_seconds

__all__ = ["DEFAULT_RETRY_STATUSES", "RetryPolicy", "exponential"]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
"""Statuses that mean "busy, try again": the gateway codes and Cloudflare's 520-524."""


@dataclass(frozen=True)
class RetryPolicy:
    """How `fetch()` retries transient failures; the default is the SDK's own behaviour.

    Which failures are transient is one rule (`docs/errors.md`): connection trouble,
    timeouts, rate limits, and the HTTP `statuses` below (plus any 5xx HTML edge page
    when `retry_edge_pages`). Between attempts it waits what the server stated, if it
    stated a wait of at most `max_stated_wait` seconds (a longer one is raised at once
    as `RateLimitError`), else `backoff_initial` doubling up to `backoff_max`, plus up
    to `jitter` seconds at random. `wait()` polls on its own schedule (`PollPolicy`) but
    uses the same rule for what is worth asking again.

    Example: `RetryPolicy(max_retries=6, statuses=DEFAULT_RETRY_STATUSES - {500})`.
    """

    max_retries: int | None = None
    """Retries after the first attempt; None: the client's `max_retries` (default 3)."""
    statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    """HTTP statuses retried (rate limits are always retried, whatever their status)."""
    retry_edge_pages: bool = True
    """Whether any other 5xx answered with an HTML page (an edge proxy's) is retried."""
    backoff_initial: float = 0.5
    """The first wait without a stated one, in seconds; it doubles each attempt."""
    backoff_max: float = 8.0
    """The longest wait without a stated one, before jitter."""
    jitter: float = 0.5
    """Up to this many seconds added at random to each backoff wait."""
    max_stated_wait: float = 60.0
    """The longest stated wait (`Retry-After`, `retry_after`...) slept through by `fetch()`."""

    def __post_init__(self) -> None:
        if self.max_retries is not None:
            checked_count("RetryPolicy.max_retries", self.max_retries, 0)
        for name in ("backoff_initial", "backoff_max", "jitter", "max_stated_wait"):
            checked_seconds(f"RetryPolicy.{name}", getattr(self, name))
        statuses = frozenset(self.statuses)
        if not all(isinstance(code, int) and 100 <= code <= 599 for code in statuses):
            raise ConfigurationError("RetryPolicy.statuses must be HTTP status codes (100-599)")
        object.__setattr__(self, "statuses", statuses)

    def backoff(self, attempt: int) -> float:
        """The wait (before jitter) after failed attempt number `attempt` (1, 2, ...)."""
        return exponential(attempt, self.backoff_initial, self.backoff_max)


def exponential(step: int, initial: float, maximum: float) -> float:
    """`initial`, doubled at each step after the first (1, 2, ...), at most `maximum`."""
    return float(min(initial * 2.0 ** min(max(step - 1, 0), 64), maximum))
