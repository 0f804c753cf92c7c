"""Retry-After in both of its forms."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from modelslab_fetch._http._retry_after import parse_retry_after, stated_wait

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


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"retry-after": "7"}, None, 7.0),
        ({}, {"retry_after": 30}, 30.0),
        ({}, {"retry_after": "12.5"}, 12.5),
        ({"x-ratelimit-reset": str(int(NOW) + 20)}, None, 20.0),
        ({"x-ratelimit-reset": str(int(NOW * 1000) + 9000)}, None, 9.0),
        ({"x-ratelimit-reset": "15"}, None, 15.0),
        ({"x-ratelimit-reset": str(int(NOW) - 5)}, None, 0.0),
        ({}, {"tips": "Rate limit exceeded, please wait for 30 seconds and try again"}, 30.0),
        ({}, {"messege": "Too many requests: try again in 2 minutes"}, 120.0),
        # The most explicit form wins.
        ({"retry-after": "3"}, {"retry_after": 30}, 3.0),
        ({"x-ratelimit-reset": str(int(NOW) + 20)}, {"retry_after": 30}, 30.0),
        ({}, {"retry_after": -1, "tips": "wait for 4 seconds"}, 4.0),
        ({}, {"retry_after": True}, None),
        ({}, {"message": "Rate limit exceeded"}, None),
        ({}, ["not", "an", "object"], None),
        ({}, None, None),
    ],
)
def test_a_stated_wait_is_read_from_whichever_form_the_server_used(
    headers: dict[str, str], body: object, expected: float | None
) -> None:
    assert stated_wait(headers, body, now=NOW) == expected
