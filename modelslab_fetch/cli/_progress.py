"""The progress view of a batch: a live line on a terminal, plain lines elsewhere.

It shows life from the first second: ids waiting, requests in flight, polls answered so
far and, while requests fail, the last error; a time-left estimate appears once enough
has finished for it to mean something, and is smoothed so it does not swing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TextIO

from rich.console import Console, RenderableType
from rich.progress import BarColumn, TextColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from .. import (
    ClientEvent,
    ClientPaused,
    PollUpdate,
    Progress,
    RequestFailed,
    ResponseReceived,
    RetryScheduled,
)
from ._lines import json_line
from ._words import counted, in_plain_words

__all__ = ["Activity", "ProgressView", "RateEstimate", "ViewMode", "choose_mode"]

ViewMode = Literal["live", "plain", "json", "quiet"]

ETA_MIN_SECONDS = 5.0
"""No time-left estimate before this many seconds..."""
ETA_MIN_DONE = 5
"""...nor before this many ids are done: before that it is noise."""
RATE_TIME_CONSTANT = 10.0
"""Seconds over which the finishing rate is averaged (an exponential moving average)."""


def choose_mode(stream: TextIO, *, quiet: bool, as_json: bool, verbose: bool = False) -> ViewMode:
    """Quiet or JSON if asked; a live line on a terminal; periodic plain lines otherwise.

    With `verbose` the log lines would tear a live display: plain lines it is.
    """
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "live" if stream.isatty() and not verbose else "plain"


class Activity:
    """Polls sent and the last request error, heard from the client's events (`on_event`).

    Each request answered or failed is a poll; a retry (`RetryScheduled`: a poll
    polled again, a fetch retried) keeps its error's words until an answer arrives
    again, so the view can say "cannot reach ...; retrying" while nothing finishes.
    With `log`, each retry and each client-wide pause is also written there as a line
    (`--verbose`).
    """

    def __init__(self, log: TextIO | None = None) -> None:
        self.polls = 0
        """Requests sent so far, answered or failed."""
        self.last_error: str | None = None
        """The last request error, until an answer arrives again."""
        self._log = log

    def __repr__(self) -> str:
        return f"Activity(polls={self.polls})"

    def __call__(self, event: ClientEvent) -> None:
        """Take one event of the client."""
        if isinstance(event, ResponseReceived):
            self.polls += 1
            self.last_error = None
        elif isinstance(event, RequestFailed):
            self.polls += 1
        elif isinstance(event, RetryScheduled):
            words = in_plain_words(event.error)
            self.last_error = words + "; retrying"
            self._write(f"request {event.request_id}: {words}; retrying in {event.delay:.1f} s")
        elif isinstance(event, ClientPaused):
            self._write(f"rate limited: every request paused for {event.seconds:.1f} s")

    def _write(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()


class RateEstimate:
    """Ids finished per second, as an exponential moving average over `time_constant`."""

    def __init__(self, started: float, *, time_constant: float = RATE_TIME_CONSTANT) -> None:
        self._started = started
        self._tau = time_constant
        self._last: tuple[float, int] | None = None
        self.rate: float | None = None
        """The smoothed rate, or None before the first id is done."""

    def observe(self, now: float, done: int) -> None:
        """Take the count of ids done at `now`."""
        if self._last is None:
            # Started from the average so far, once a second has passed: the first few
            # ids done in a fraction of a second would make any rate look huge.
            if done > 0 and now - self._started >= 1.0:
                self.rate = done / (now - self._started)
                self._last = (now, done)
            return
        then, before = self._last
        dt = now - then
        if dt <= 0:
            return
        instant = (done - before) / dt
        alpha = 1.0 - math.exp(-dt / self._tau)
        assert self.rate is not None  # noqa: S101 - set with _last
        self.rate += alpha * (instant - self.rate)
        self._last = (now, done)

    def seconds_left(self, now: float, done: int, total: int | None) -> float | None:
        """Time left, or None until it means something."""
        if total is None or self.rate is None or self.rate <= 0 or done >= total:
            return None
        if now - self._started < ETA_MIN_SECONDS or done < ETA_MIN_DONE:
            return None
        return (total - done) / self.rate


class ProgressView:
    """Shows done, failed, in flight, polls, rate and time left of a batch, as it runs.

    `update()` takes each `Progress` event; `tick()` redraws on a timer, so the counts of
    requests move even while nothing finishes; `finish()` draws the last state. On a
    terminal the line is drawn by rich; elsewhere plain lines every few seconds, or JSON
    objects (one per line) with `--json`.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        mode: ViewMode,
        total: int | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        activity: Activity | None = None,
        requests_in_flight: Callable[[], int] | None = None,
    ) -> None:
        self._stream = stream
        self._mode = mode
        self._total = total
        self._interval = interval if interval is not None else (0.1 if mode == "live" else 5.0)
        self._clock = clock
        self._started = clock()
        self._last_drawn = -float("inf")
        self._progress = Progress(succeeded=0, failed=0, in_flight=0, total=total)
        self._rate = RateEstimate(self._started)
        self._activity = activity
        self._requests_in_flight = requests_in_flight
        self._live: Any = None
        self._finished = False
        self._read = 0
        self._job: PollUpdate | None = None
        self._job_at = 0.0  # when that poll was heard of: its eta and next poll count down
        self._last_line: str | None = None

    def __repr__(self) -> str:
        return f"ProgressView(mode={self._mode!r})"

    @property
    def progress(self) -> Progress:
        """The latest counts."""
        return self._progress

    @property
    def total(self) -> int | None:
        """How many ids the run has, when known."""
        return self._total

    def set_total(self, total: int | None) -> None:
        """The number of ids, once known."""
        self._total = total
        self._progress = Progress(
            self._progress.succeeded, self._progress.failed, self._progress.in_flight, total
        )

    def note_read(self) -> None:
        """One more id was taken from the input (it is waited on until its outcome)."""
        self._read += 1

    def note_poll(self, update: PollUpdate) -> None:
        """Take a poll of a single job (`on_update`): its status, `eta` and next poll."""
        self._job, self._job_at = update, self._clock()
        self.tick()

    def update(self, progress: Progress) -> None:
        """Take a new `Progress`; redraw if the last drawing is old enough."""
        total = progress.total if progress.total is not None else self._total
        self._progress = Progress(progress.succeeded, progress.failed, progress.in_flight, total)
        self.tick()

    def tick(self) -> None:
        """Redraw if the last drawing is older than the interval."""
        now = self._clock()
        self._rate.observe(now, self._progress.done)
        if now - self._last_drawn >= self._interval:
            self._draw(now, final=False)

    def finish(self) -> None:
        """Draw the final state (and end the live line)."""
        if self._finished:
            return
        self._draw(self._clock(), final=True)
        self.close()

    def close(self) -> None:
        """Stop the live display, leaving the terminal as it was (safe to call twice)."""
        self._finished = True
        if self._live is not None:
            self._live.stop()
            self._live = None

    def state(self, now: float) -> dict[str, Any]:
        """What the view shows, as a dictionary (the `--json` progress event)."""
        progress = self._progress
        elapsed = max(now - self._started, 1e-9)
        left = self._rate.seconds_left(now, progress.done, progress.total)
        activity = self._activity
        return {
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "total": progress.total,
            "waiting": max(progress.in_flight, self._read - progress.done),
            "requests_in_flight": (
                None if self._requests_in_flight is None else self._requests_in_flight()
            ),
            "polls": None if activity is None else activity.polls,
            "last_error": None if activity is None else activity.last_error,
            "rate_per_s": None if self._rate.rate is None else round(self._rate.rate, 2),
            "seconds_left": None if left is None else round(left),
            "elapsed_s": round(elapsed, 2),
            "job": None if self._job is None else _job_state(self._job, now - self._job_at),
        }

    def _draw(self, now: float, *, final: bool) -> None:
        self._last_drawn = now
        if self._mode == "quiet":
            return
        state = self.state(now)
        if self._mode == "json":
            event = {"event": "finished" if final else "progress", **state}
            self._stream.write(json_line(event) + "\n")
            self._stream.flush()
        elif self._mode == "live":
            self._draw_live(state)
        else:
            # Plain lines are for logs and pipes: a line saying nothing new is not written.
            line = line_of(state)
            if line != self._last_line or final:
                self._last_line = line
                self._stream.write(line + "\n")
                self._stream.flush()

    def _draw_live(self, state: dict[str, Any]) -> None:
        if self._finished:
            return
        if self._live is None:
            console = Console(file=self._stream, force_terminal=True, highlight=False)
            self._live = _LiveLines(
                BarColumn(bar_width=20),
                TextColumn("{task.description}", markup=False),
                console=console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._live.add_task("", total=state["total"])
            self._live.start()
        # The last error gets a line of its own: on an 80-column terminal it would
        # otherwise be cut off the end of the counts.
        self._live.error = state["last_error"]
        self._live.update(
            self._task,
            completed=state["succeeded"] + state["failed"],
            total=state["total"],
            description=line_of(state, with_error=False),
        )
        self._live.refresh()


class _LiveLines(RichProgress):
    """rich's progress bar and counts, and under them the last error, while there is one."""

    error: str | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        """The bar and counts; then the error line."""
        yield self.make_tasks_table(self.tasks)
        if self.error:
            yield Text(self.error, style="yellow")


def _job_state(update: PollUpdate, since: float) -> dict[str, Any]:
    """One job's last poll, its estimate and next poll counted down by `since` seconds."""
    since = max(since, 0.0)
    return {
        "request_id": update.request_id,
        "status": None if update.status is None else update.status.value,
        "eta": update.eta,
        "eta_left": None if update.eta is None else round(max(update.eta - since, 0.0)),
        "polls": update.polls,
        "next_poll_in": (
            None if update.next_poll_in is None else round(max(update.next_poll_in - since, 0.0), 1)
        ),
    }


def job_line(job: dict[str, Any]) -> str:
    """One job's line: "13443927: queued, about 20s left (poll 3, next in 5.0s)".

    The time left counts down from the server's `eta` as time passes (it said "about 20
    s" once, not every second), down to "due now".
    """
    if job["status"] == "processing":
        left = job.get("eta_left")
        about = "" if left is None else f", about {_duration(left)} left" if left else ", due now"
        words = f"queued{about}"
    else:
        words = job["status"] or "not answered"
    when = "" if job["next_poll_in"] is None else f", next in {job['next_poll_in']}s"
    return f"{job['request_id']}: {words} (poll {job['polls']}{when})"


def line_of(state: dict[str, Any], *, with_error: bool = True) -> str:
    """The progress line for a state from `ProgressView.state`."""
    job = state.get("job")
    if job is not None and state["total"] == 1 and job["next_poll_in"] is not None:
        # While one id is polled, its own news; once it is over, the run's counts.
        line = job_line(job)
        if state["last_error"] and with_error:
            line += f" · {state['last_error']}"
        return line
    done = state["succeeded"] + state["failed"]
    total = state["total"]
    parts = [
        f"{done}/{total} done" if total is not None else f"{done} done",
        f"{state['failed']} failed",
        f"{state['waiting']} waiting",
    ]
    if state["requests_in_flight"] is not None:
        parts.append(f"{counted(state['requests_in_flight'], 'request')} in flight")
    if state["polls"] is not None:
        parts.append(counted(state["polls"], "poll"))
    if state["rate_per_s"] is not None:
        parts.append(f"{state['rate_per_s']:.1f}/s")
    if state["seconds_left"] is not None:
        parts.append(f"~{_duration(state['seconds_left'])} left")
    else:
        parts.append(f"{state['elapsed_s']:.0f}s")
    if state["last_error"] and with_error:
        parts.append(state["last_error"])
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
