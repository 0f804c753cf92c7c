"""The one place that turns a wait the server stated into seconds, whatever form it took.

`Retry-After` (seconds or an HTTP date), `X-RateLimit-Reset` (epoch), a body `retry_after`,
or words (`"please wait for 30 seconds"`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime

from .._numbers import finite_number

__all__ = ["parse_rate_limit_reset", "parse_retry_after", "stated_delay", "stated_wait"]

# An epoch time in seconds is above this (2001); a number below it is a delay in seconds.
_EPOCH_SECONDS_FROM = 1e9
# An epoch time in milliseconds is above this.
_EPOCH_MILLISECONDS_FROM = 1e12

_WAIT_IN_WORDS = re.compile(
    r"(?:wait|retry|try again)\D{0,20}?(\d+(?:\.\d+)?)\s*(s\b|sec|second|minute|min\b)",
    re.IGNORECASE,
)
_BODY_WAIT_FIELDS = ("retry_after", "retryAfter", "retry-after")
_BODY_TEXT_FIELDS = ("tips", "tip", "message", "messege", "error")


def stated_wait(headers: Mapping[str, str], body: object, *, now: float) -> float | None:
    """Seconds the server asked us to wait, from whichever form it used, or None.

    The most explicit form wins: `Retry-After`, then the body's `retry_after`, then
    `X-RateLimit-Reset`, then a wait stated in words. `now` is epoch seconds.
    """
    for seconds in (
        parse_retry_after(headers.get("retry-after"), now=now),
        _wait_field(body),
        parse_rate_limit_reset(headers.get("x-ratelimit-reset"), now=now),
        _wait_in_words(body),
    ):
        if seconds is not None:
            return seconds
    return None


def stated_delay(error: BaseException | None) -> float | None:
    """The wait an error's answer stated, or None: the same to `fetch()`'s retries and polls."""
    seconds = getattr(error, "retry_after", None)
    return seconds if isinstance(seconds, float) else None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds to wait that a `Retry-After` value asks for, or None.

    Delay-seconds (`"120"`, fractions tolerated) or an HTTP date, against epoch `now`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _seconds(text)
    if seconds is None:
        return _seconds_until_http_date(text, now=now)
    return seconds


def parse_rate_limit_reset(value: str | None, *, now: float) -> float | None:
    """Return the seconds until an `X-RateLimit-Reset` epoch time (s or ms), or a delay; or None."""
    if value is None:
        return None
    number = _seconds(value.strip())
    if number is None:
        return None
    if number >= _EPOCH_MILLISECONDS_FROM:
        return max(number / 1000 - now, 0.0)
    if number >= _EPOCH_SECONDS_FROM:
        return max(number - now, 0.0)
    return number


def _seconds(value: object) -> float | None:
    number = finite_number(value)
    return None if number is None or number < 0 else number


def _wait_field(body: object) -> float | None:
    if not isinstance(body, Mapping):
        return None
    for name in _BODY_WAIT_FIELDS:
        seconds = _seconds(body.get(name))
        if seconds is not None:
            return seconds
    return None


def _wait_in_words(body: object) -> float | None:
    if not isinstance(body, Mapping):
        return None
    for name in _BODY_TEXT_FIELDS:
        text = body.get(name)
        if not isinstance(text, str):
            continue
        found = _WAIT_IN_WORDS.search(text[:1000])
        if found is not None:
            seconds = float(found.group(1))
            return seconds * 60 if found.group(2).lower().startswith("min") else seconds
    return None


def _seconds_until_http_date(text: str, *, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - now, 0.0)
