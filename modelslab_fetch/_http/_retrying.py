"""Call once cheaply, and hand over to tenacity only if that first outcome asks for more.

Most calls succeed at once (most jobs asked about are finished, most requests answer),
and tenacity costs CPU on every call it runs. So the first attempt runs outside it; only
when that attempt failed in a way worth retrying, or returned something to poll again,
is tenacity built, and it is handed that first outcome as its attempt one: its count of
attempts, its waits and its logs then read exactly as if it had run from the start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tenacity import AsyncRetrying

__all__ = ["try_first_then_retry"]

T = TypeVar("T")


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
