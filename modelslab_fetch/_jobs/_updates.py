"""What `wait(..., on_update=...)` reports after each poll: where the job stands, what next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._results import FetchResult, Status

__all__ = ["PollUpdate", "UpdateCallback"]


@dataclass(frozen=True, slots=True)
class PollUpdate:
    """One poll of one job, as `on_update` sees it (e.g. "queued, about 20 s left").

    After every poll: the status and `eta` the server answered (or the transient error
    polled through), how many polls so far, and when the next poll comes (None once
    the wait is over, whatever its end).
    """

    request_id: str
    """The id being waited on."""
    polls: int
    """Polls answered so far, this one included."""
    status: Status | None
    """The job's status, or None when the poll failed (see `error`)."""
    eta: float | None
    """The server's estimate of seconds left, if it gave one."""
    next_poll_in: float | None
    """Seconds until the next poll, or None when there will be none."""
    elapsed: float
    """Seconds since the wait began."""
    result: FetchResult | None = None
    """The poll's full result, when it answered."""
    error: Exception | None = None
    """The error of a failed poll (polled through if `next_poll_in` is set)."""

    @property
    def finished(self) -> bool:
        """Whether this is the last update of the wait."""
        return self.next_poll_in is None


UpdateCallback = Callable[[PollUpdate], object]
"""Called with a `PollUpdate` after each poll; an exception it raises ends the wait."""
