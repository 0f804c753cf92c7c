"""Reading the `Retry-After` header, in either of its two forms (RFC 9110 section 10.2.3)."""

from __future__ import annotations

import math
from datetime import timezone
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds to wait that `value` asks for, or None if it says nothing usable.

    `value` is either delay-seconds (`"120"`; fractions are tolerated) or an HTTP date
    (`"Wed, 21 Oct 2026 07:28:00 GMT"`), measured against `now` (seconds since the epoch).
    A date in the past means "retry now" (0.0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now=now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until_http_date(text: str, *, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - now, 0.0)
