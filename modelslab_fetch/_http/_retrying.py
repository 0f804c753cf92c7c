"""Retrying as `fetch()` does, for API calls and downloads alike, and tenacity only when needed.

`with_retries` runs a call and tries it again while its failure is transient and the
server stated no longer wait than the policy sleeps through, waiting what the server
stated, else the policy's backoff with jitter. Most calls succeed at once, and tenacity
costs CPU on every call it runs: so the first attempt runs outside it
(`try_first_then_retry`), and tenacity is built only when that first outcome asks for
more, replaying it as attempt one, so that its count, waits and logs read as if it had
run from the start. Polling uses the same hand-over with a schedule of its own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from .._clock import Clock
from .._errors import RateLimitError
from .._retry_policy import RetryPolicy
from ._retry_after import stated_delay

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

__all__ = ["try_first_then_retry", "with_retries", "worth_retrying"]

logger = logging.getLogger("modelslab_fetch")

T = TypeVar("T")


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    retries: int,
    policy: RetryPolicy,
    clock: Clock,
    on_retry: Callable[[RetryCallState], None] | None = None,
    first: Exception | None = None,
) -> T:
    """`call()`, tried again up to `retries` times while it fails in a way worth it.

    Worth it: `transient`, and no stated wait longer than `policy.max_stated_wait` (that
    error is raised at once). Each retry is logged at INFO, and told to `on_retry`.
    `first`: the first attempt was made already, and failed with it (worth retrying).
    """

    def before_sleep(retry_state: RetryCallState) -> None:
        _log_retry(retry_state)
        if on_retry is not None:
            on_retry(retry_state)

    def retried(error: BaseException) -> bool:
        return worth_retrying(error, transient, policy)

    def retrying() -> AsyncRetrying:
        from tenacity import (  # noqa: PLC0415 - only a call that failed needs it
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
        )

        return AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=lambda state: _wait(state, policy),
            retry=retry_if_exception(retried),
            sleep=clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    if first is not None:
        return await _retried_after(first, call, retrying)
    return await try_first_then_retry(
        call, retrying, retried=lambda error: bool(retries) and retried(error)
    )


def worth_retrying(
    error: BaseException, transient: Callable[[BaseException], bool], policy: RetryPolicy
) -> bool:
    """Whether `error` is retried: `transient`, with no stated wait past the policy's."""
    wait = stated_delay(error)
    return transient(error) and (wait is None or wait <= policy.max_stated_wait)


def _wait(retry_state: RetryCallState, policy: RetryPolicy) -> float:
    """What the server stated, else the policy's exponential backoff with jitter."""
    outcome = retry_state.outcome
    error = None if outcome is None else outcome.exception()
    if isinstance(error, RateLimitError):
        return 0.0  # the client-wide pause (TrafficControl) does the waiting
    stated = stated_delay(error)
    if stated is not None:
        return stated
    jitter = random.uniform(0, policy.jitter)  # noqa: S311 - jitter, not crypto
    return policy.backoff(retry_state.attempt_number) + jitter


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = None if outcome is None else outcome.exception()
    logger.info(
        "retrying in %.2f s after attempt %d failed: %s",
        retry_state.upcoming_sleep,
        retry_state.attempt_number,
        error,
    )


async def try_first_then_retry(
    call: Callable[[], Awaitable[T]],
    retrying: Callable[[], AsyncRetrying],
    *,
    retried: Callable[[BaseException], bool],
    again: Callable[[T], bool] = lambda _result: False,
) -> T:
    """Return `call()`'s result, retried under `retrying()` only if the first needs it.

    The first call runs outside tenacity; if it raised something `retried`, or returned
    something `again`, `retrying()` is built and runs on, with that first outcome
    replayed as its attempt one.
    """
    first: T | Exception
    try:
        first = await call()
    except Exception as exc:
        if not retried(exc):
            raise
        first = exc
    else:
        if not again(first):
            return first
    return await _retried_after(first, call, retrying)


async def _retried_after(
    first: T | Exception, call: Callable[[], Awaitable[T]], retrying: Callable[[], AsyncRetrying]
) -> T:
    """Run `retrying()` on `call`, with the `first` outcome replayed as its attempt one."""
    replay: list[T | Exception] = [first]

    async def attempt() -> T:
        if replay:  # the attempt already made, before tenacity took over
            outcome = replay.pop()
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return await call()

    result: T = await retrying()(attempt)
    return result
