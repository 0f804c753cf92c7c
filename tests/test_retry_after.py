"""Retry-After in both of its forms."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from modelslab_fetch._retry_after import parse_retry_after

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Sat, 21 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 12:00:30 -0000", 30.0),
        ("Sat, 21 Nov 2026 11:59:00 GMT", 0.0),
        ("-3", None),
        ("nan", None),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_http_date_is_measured_against_now() -> None:
    when = datetime(2026, 11, 21, 12, 2, 0, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 120.0
