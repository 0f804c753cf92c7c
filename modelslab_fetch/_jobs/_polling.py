"""Polling one job until it finishes, spaced by the server's `eta`, bound by a deadline."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from .._clock import Clock
from .._errors import ConfigurationError, GenerationFailedError, WaitTimeoutError
from .._events import EventSink, RetryScheduled
from .._http._retry_after import stated_delay
from .._http._transport import is_transient
from .._numbers import checked_seconds
from .._results import FetchResult
from .._retry_policy import exponential
from ._readiness import ReadinessEstimate

if TYPE_CHECKING:  # tenacity is imported on the first wait that polls twice (_http/_retrying)
    from tenacity import AsyncRetrying, RetryCallState

    from ._deliveries import Watch
from .._http._retrying import try_first_then_retry
from ._updates import PollUpdate, UpdateCallback

__all__ = ["DEFAULT_WAIT_TIMEOUT", "PollPolicy", "wait_until_finished"]

logger = logging.getLogger("modelslab_fetch")

R = TypeVar("R", bound=FetchResult)

DEFAULT_WAIT_TIMEOUT = 600.0
"""Seconds `wait()` polls before giving up, unless told otherwise."""


@dataclass(frozen=True)
class PollPolicy:
    """How `wait()` spaces its polls.

    By default each job's ready time is learnt from every `processing` answer: each
    `eta`, off by at most `eta_error` (relative), bounds when the job can be ready, and
    the next poll comes just after the early edge of those bounds (docs/performance.md).
    Setting `eta_factor` or `eta_offset` asks for a fixed formula instead: the next poll
    comes `min(eta, eta * eta_factor + eta_offset)` seconds after the answer (the unset
    one defaulting to 0.75 and 0.7 s). Gaps stay within [`min_interval`, `max_interval`].
    Without an `eta` (or after a transient error), polls back off exponentially with
    jitter from `backoff_initial` to `backoff_max`. The last poll starts
    `final_poll_lead` seconds before the deadline. With webhooks configured, a wait ends
    when its delivery arrives, and polls meanwhile as a fallback, each gap
    `push_stretch` times longer, up to `push_max_interval` (docs/webhooks.md).
    """

    min_interval: float = 0.3
    """The shortest gap between two polls of one job, whatever the `eta` says."""
    max_interval: float = 30.0
    """The longest gap between two polls of one job, whatever the `eta` says."""
    eta_error: float = 0.4
    """The largest relative error assumed of the server's `eta` (0.4 is ±40%), before
    answers show it to be worse; it sets how early the learning schedule polls."""
    eta_factor: float | None = None
    """The share of the server's `eta` to sleep before the next poll, for the fixed
    formula (see the class docs); None, with `eta_offset` None, learns instead."""
    eta_offset: float | None = None
    """Seconds added to `eta * eta_factor` in the fixed formula; the sum never exceeds
    the `eta` itself."""
    backoff_initial: float = 1.0
    """The first gap when the server gives no `eta`."""
    backoff_max: float = 15.0
    """The largest gap when the server gives no `eta`."""
    final_poll_lead: float = 0.5
    """How long before the deadline the last poll starts."""
    push_stretch: float = 1.75
    """While a webhook delivery is expected, how many times longer each gap between
    polls is (measured trade-offs in docs/webhooks.md). 1 polls as if no webhook were
    coming; larger values save polls and cost more lateness when a delivery is lost."""
    push_max_interval: float = 120.0
    """While a webhook delivery is expected, the longest gap between two polls (instead
    of `max_interval`): the most a lost delivery can cost beyond its `eta`."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None or name not in ("eta_factor", "eta_offset"):
                checked_seconds(f"PollPolicy.{name}", value)
        if self.min_interval > self.max_interval:
            raise ConfigurationError("PollPolicy.min_interval cannot exceed max_interval")
        if self.push_stretch < 1:
            raise ConfigurationError(
                "PollPolicy.push_stretch must be >= 1 (1 polls as if no webhook came)"
            )

    @property
    def learns(self) -> bool:
        """Whether polls follow each job's learnt ready time (neither eta knob is set)."""
        return self.eta_factor is None and self.eta_offset is None

    def delay_after_eta(self, eta: float) -> float:
        """Seconds to wait before the next poll by the fixed formula, given an `eta`."""
        factor = 0.75 if self.eta_factor is None else self.eta_factor
        offset = 0.7 if self.eta_offset is None else self.eta_offset
        wanted = min(eta, eta * factor + offset)
        return min(max(wanted, self.min_interval), self.max_interval)

    def readiness_estimate(self) -> ReadinessEstimate:
        """A fresh estimate of one job's ready time under this policy's band and bounds."""
        return ReadinessEstimate(
            band=self.eta_error, min_interval=self.min_interval, max_interval=self.max_interval
        )


def check_wait_timeout(timeout: float | None) -> float | None:
    """Return `timeout` if it is a usable deadline (seconds > 0, or None for none)."""
    if timeout is None:
        return None
    what = " of seconds, or None to wait without a deadline"
    return checked_seconds("timeout", timeout, positive=True, infinite=True, what=what)


class _Schedule:
    """When to poll next (a tenacity wait), and whether the deadline forbids it (a stop)."""

    def __init__(
        self,
        policy: PollPolicy,
        clock: Clock,
        deadline: float | None,
        watch: Watch[FetchResult] | None = None,
    ) -> None:
        self._plain = self._policy = self._pushed = policy
        self._clock = clock
        self._deadline = deadline
        self._streak = 0  # polls in a row with neither an eta nor success
        self._watch = watch
        if watch is not None and watch.expecting:
            # While a delivery is expected, gaps may grow to push_max_interval.
            self._pushed = dataclasses.replace(
                policy, max_interval=max(policy.max_interval, policy.push_max_interval)
            )
        self._estimate = self._pushed.readiness_estimate() if policy.learns else None

    def _backoff(self) -> float:
        # Grows with the streak, not the poll count: one late 503 is no fifth failure.
        self._streak += 1
        policy = self._policy
        step = exponential(self._streak, policy.backoff_initial, policy.backoff_max)
        return step + random.uniform(0, policy.backoff_initial)  # noqa: S311 - jitter

    def delay(self, retry_state: RetryCallState) -> float:
        """The sleep before the next poll, clipped so the last poll starts before the deadline."""
        expecting = self._watch is not None and self._watch.expecting
        self._policy = self._pushed if expecting else self._plain
        wanted = self._wanted_delay(retry_state)
        outcome = retry_state.outcome
        if expecting and not (outcome is not None and outcome.failed):
            # A delivery will tell: poll later, as the fallback for one lost.
            policy = self._policy
            wanted = min(wanted * policy.push_stretch, policy.push_max_interval)
        if self._deadline is None:
            return wanted
        return max(min(wanted, self._last_poll_at(self._deadline) - self._clock.now()), 0.0)

    def past_last_poll(self, _retry_state: RetryCallState) -> bool:
        """Whether the time for the final poll has come and gone."""
        if self._deadline is None:
            return False
        return self._clock.now() >= self._last_poll_at(self._deadline)

    def _last_poll_at(self, deadline: float) -> float:
        return deadline - self._policy.final_poll_lead

    def _wanted_delay(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            retry_after = stated_delay(outcome.exception())
            if retry_after is not None:
                return max(retry_after, self._policy.min_interval)
        elif outcome is not None:
            eta = outcome.result().eta
            if self._estimate is not None:
                now = self._clock.now()
                self._estimate.observe(now, eta)
                wanted = self._estimate.next_poll(now)
                if wanted is not None and eta is not None:
                    self._streak = 0
                    # Clipped again: `now + gap - now` can round just outside the bounds.
                    low, high = self._policy.min_interval, self._policy.max_interval
                    return min(max(wanted - now, low), high)
            elif eta is not None:
                self._streak = 0
                return self._policy.delay_after_eta(eta)
        return self._backoff()


async def wait_until_finished(
    poll: Callable[[], Awaitable[R]],
    *,
    request_id: str,
    timeout: float | None,
    policy: PollPolicy,
    clock: Clock,
    on_update: UpdateCallback | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
    events: EventSink | None = None,
    first: R | None = None,
    watch: Watch[R] | None = None,
    call: CallDeadline | None = None,
    poll_bound: Callable[[], float | None] | None = None,
) -> R:
    """Call `poll` until its result is finished; return it if it succeeded.

    Raises `GenerationFailedError` for `failed`/`error`, `WaitTimeoutError` at the
    deadline, and a non-`transient` error from `poll` at once. `first` (a generation
    response) counts as poll 1, with no request; `watch` cuts sleeps short on a delivery.
    `call` (the scope of the call the wait runs in) then carries the wait's deadline;
    `poll_bound()`, the longest a poll made now can take (None: unbounded), spares it
    a timer while the first poll cannot outlast it.
    """
    timeout = check_wait_timeout(timeout)
    started = clock.now()
    polled: R | Exception | None = first
    # `armed`: the call's scope carries the wait's deadline (when there is a `timeout`).
    armed = first is None and watch is None and on_update is None and call is not None
    if armed:
        assert call is not None  # noqa: S101 - said just above
        # Most jobs asked about are finished: their one poll runs before the wait's state
        # and schedule are built, which cost a sixth of a polled request. Any other
        # first outcome is handed to them as poll 1, as a generation response is.
        # The deadline needs a timer during it only if the poll could outlast it: one
        # admitted at once ends by its own deadline (`poll_bound()`), long before a
        # wait's (30 s against 600); past the poll, the wait's deadline stands anyway.
        began = call.now()
        bound = None if poll_bound is None else poll_bound()
        timer = timeout is not None and (bound is None or bound + 1.0 > timeout)
        if timer:
            call.set_deadline(timeout, partial(_unanswered, request_id, timeout))
        try:
            polled = await poll()
        except Exception as exc:
            if not transient(exc):
                if timer:
                    call.set_deadline(None)
                raise
            polled = exc
        else:
            if polled.finished:
                if timer:
                    call.set_deadline(None)
                if not polled.succeeded:
                    raise GenerationFailedError(polled, request_id=request_id)
                return polled
        if timeout is not None and not timer:  # what is left of the wait, from its start
            left = max(timeout - (call.now() - began), 0.0)
            call.set_deadline(left, partial(_unanswered, request_id, timeout))
    waiter = _Waiter(
        poll,
        request_id=request_id,
        timeout=timeout,
        policy=policy,
        clock=clock,
        on_update=on_update,
        transient=transient,
        events=events,
        first=polled,
        watch=watch,
        started=started,
    )
    return await _polled_until_finished(waiter, clock, call, armed=armed)


async def _polled_until_finished(
    waiter: _Waiter[R], clock: Clock, call: CallDeadline | None, *, armed: bool
) -> R:
    # The schedule keeps polls inside the deadline on `clock`; a cancel scope also cuts
    # a hung poll, on the loop's time: the call's own (`call`), else one of the wait's.
    if call is None:
        result, timed_out = await _polled_in_own_scope(waiter, waiter.timeout)
    else:
        result, timed_out = await _polled_in_call_scope(waiter, waiter.timeout, call, armed=armed)
    if timed_out is not None:
        waiter.report(timed_out, next_poll_in=None)
        if waiter.deadline is not None:
            # The last poll started `final_poll_lead` early: the error waits for the
            # deadline itself, so `timeout=600` means "gave up at 600 s" to every caller.
            await clock.sleep(max(waiter.deadline - clock.now(), 0.0))
        raise timed_out
    assert result is not None  # noqa: S101 - a wait that did not time out has its result
    waiter.report(result, next_poll_in=None)
    if not result.succeeded:
        raise GenerationFailedError(result, request_id=waiter.request_id)
    return result


class CallDeadline(Protocol):
    """A call's scope that can carry a wait's deadline (`_closing.CallScope`)."""

    def set_deadline(
        self, seconds: float | None, timed_out: Callable[[], Exception] | None = None
    ) -> None:
        """End the call `seconds` from now, raising `timed_out()`; None: clear it."""

    def on_deadline(self, timed_out: Callable[[], Exception]) -> None:
        """Raise `timed_out()` at the deadline set before, instead of what it said."""

    def now(self) -> float:
        """The time on the clock the deadline is counted on."""


def _unanswered(request_id: str, timeout: float | None) -> WaitTimeoutError:
    # The deadline passed during the first poll: nothing was answered, nothing failed.
    return WaitTimeoutError(request_id=request_id, timeout=timeout or 0.0, result=None, error=None)


def _reported(waiter: _Waiter[Any], error: WaitTimeoutError) -> WaitTimeoutError:
    waiter.report(error, next_poll_in=None)
    return error


_Polled = tuple[R | None, WaitTimeoutError | None]


async def _polled_in_own_scope(waiter: _Waiter[R], timeout: float | None) -> _Polled[R]:
    with anyio.move_on_after(math.inf if timeout is None else timeout):
        try:
            return await waiter.poll_until_finished(), None
        except WaitTimeoutError as exc:
            return None, exc
        except Exception as exc:
            waiter.report(exc, next_poll_in=None)
            raise
    return None, waiter.timeout_error(None)  # reached only when the scope's deadline passed


async def _polled_in_call_scope(
    waiter: _Waiter[R], timeout: float | None, call: CallDeadline, *, armed: bool
) -> _Polled[R]:
    # Past the deadline the call's scope raises what `timed_out` makes, where it ends.
    # `armed`: the first poll ran already, under the deadline set for it.
    if timeout is not None:
        timed_out = lambda: _reported(waiter, waiter.timeout_error(None))  # noqa: E731
        if not armed:
            call.set_deadline(timeout, timed_out)
        else:
            call.on_deadline(timed_out)
    try:
        return await waiter.poll_until_finished(), None
    except WaitTimeoutError as exc:
        # Should the deadline pass as this one is made (the last poll ends near it), the
        # scope ends the wait with this same error, not a second one.
        made = exc
        call.set_deadline(None, lambda: made)
        return None, made
    except Exception as exc:
        waiter.report(exc, next_poll_in=None)
        raise
    finally:
        if timeout is not None:
            call.set_deadline(None)


class _Waiter(Generic[R]):
    """The state of one `wait_until_finished`: the polls so far, and what to do next."""

    def __init__(
        self,
        poll: Callable[[], Awaitable[R]],
        *,
        request_id: str,
        timeout: float | None,
        policy: PollPolicy,
        clock: Clock,
        on_update: UpdateCallback | None = None,
        transient: Callable[[BaseException], bool] = is_transient,
        events: EventSink | None = None,
        first: R | Exception | None = None,
        watch: Watch[R] | None = None,
        started: float | None = None,
    ) -> None:
        self._poll = poll
        # Poll 1 already had: a generation response, or the first poll's own outcome.
        self._first = first
        self._watch = watch
        self.request_id = request_id
        self.timeout = timeout
        self._policy = policy
        self._clock = clock
        self._on_update = on_update
        self._transient = transient
        self._events = events
        self._started = clock.now() if started is None else started
        self.deadline = None if timeout is None else self._started + timeout
        self._last: R | None = None
        # The latest poll's error: the cause of a timeout that falls between polls.
        self._last_error: Exception | None = None
        self._polls = 0

    async def poll_until_finished(self) -> R:
        def retrying() -> AsyncRetrying:
            from tenacity import (  # noqa: PLC0415 - only a wait that polls again needs it
                AsyncRetrying,
                retry_if_exception,
                retry_if_result,
            )

            watch = self._watch
            schedule = _Schedule(self._policy, self._clock, self.deadline, watch)  # type: ignore[arg-type]
            sleep = self._clock.sleep if watch is None else partial(watch.sleep, self._clock)
            return AsyncRetrying(
                retry=retry_if_result(_unfinished) | retry_if_exception(self._transient),
                wait=schedule.delay,
                stop=schedule.past_last_poll,
                sleep=sleep,
                before_sleep=self._log_next_poll,
                retry_error_callback=self._give_up,
                reraise=True,
            )

        # Most jobs asked about are finished: the first poll runs before tenacity is paid for.
        return await try_first_then_retry(
            self._poll_and_remember, retrying, retried=self._transient, again=_unfinished
        )

    async def _poll_and_remember(self) -> R:
        self._polls += 1
        watch = self._watch
        if watch is not None:
            delivered = watch.trusted()
            if delivered is not None:  # trust_webhooks: the delivery is the answer
                self._last = delivered
                return delivered
        first = self._first
        if first is not None:  # poll 1, had already (see `wait_until_finished`)
            self._first = None
            if isinstance(first, Exception):
                self._last_error = first
                raise first
            self._last = first
            return first
        if watch is not None:
            watch.confirming()  # this fetch confirms a delivery that came
        try:
            self._last = await self._poll()
        except Exception as exc:
            self._last_error = exc
            raise
        self._last_error = None
        return self._last

    def report(self, outcome: R | Exception, *, next_poll_in: float | None) -> None:
        """Tell `on_update` about the latest poll (a result or an error)."""
        if self._on_update is None:
            return
        result = None if isinstance(outcome, Exception) else outcome
        self._on_update(
            PollUpdate(
                request_id=self.request_id,
                polls=self._polls,
                status=None if result is None else result.status,
                eta=None if result is None else result.eta,
                next_poll_in=next_poll_in,
                elapsed=self._clock.now() - self._started,
                result=result,
                error=outcome if isinstance(outcome, Exception) else None,
            )
        )

    def timeout_error(self, cause: BaseException | None) -> WaitTimeoutError:
        """The error for a deadline reached: the last result, and `cause` or the last error."""
        if cause is None:
            cause = self._last_error
        error = WaitTimeoutError(
            request_id=self.request_id,
            timeout=self.timeout or 0.0,
            result=self._last,
            error=cause,
        )
        error.__cause__ = cause
        return error

    def _give_up(self, retry_state: RetryCallState) -> R:
        outcome = retry_state.outcome
        raise self.timeout_error(outcome.exception() if outcome is not None else None)

    def _log_next_poll(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        if outcome is not None:
            latest = outcome.exception() if outcome.failed else outcome.result()
            self.report(latest, next_poll_in=retry_state.upcoming_sleep)  # type: ignore[arg-type]
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            logger.info(  # the error's text names the request already
                "%s; polling again in %.2f s", error, retry_state.upcoming_sleep
            )
            if self._events is not None and isinstance(error, Exception):
                self._events(
                    RetryScheduled(self.request_id, self._polls, retry_state.upcoming_sleep, error)
                )
        else:
            logger.debug(
                "request %s: not finished; next poll in %.2f s",
                self.request_id,
                retry_state.upcoming_sleep,
            )


def _unfinished(result: FetchResult) -> bool:
    return not result.finished
