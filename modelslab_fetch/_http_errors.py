"""Turning one HTTP response into either a decoded JSON object or one of our errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._backends import RawResponse
from ._errors import (
    APIStatusError,
    AuthenticationError,
    ModelsLabError,
    RateLimitError,
    ResponseParseError,
)
from ._retry_after import parse_retry_after

__all__ = ["RETRYABLE_STATUS_CODES", "decode_response", "excerpt_of"]

# Statuses that mean "the server or an edge proxy is busy, try again": the common
# gateway codes plus Cloudflare's 520-524, which ModelsLab's edge sends as HTML pages.
RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})

EXCERPT_CHARS = 200


def excerpt_of(content: bytes) -> str:
    """Return the start of a body as one short line of text, for error messages."""
    text = content[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def is_html(headers: Mapping[str, str], content: bytes) -> bool:
    """Whether a body is an HTML page, as edge proxies send on overload."""
    if "html" in headers.get("content-type", "").lower():
        return True
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def decode_response(
    raw: RawResponse, content: bytes, *, request_id: str | None, now: float
) -> dict[str, Any] | ModelsLabError:
    """Return the JSON object a 2xx response carries, or the error the response stands for.

    `content` is the body, already redacted; `now` (epoch seconds) dates `Retry-After`.
    The caller decides whether an error is worth retrying (see `is_transient`).
    """
    status = raw.status_code
    if status >= 300:
        return _status_error(raw, content, request_id=request_id, now=now)
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        kind = "an HTML page" if is_html(raw.headers, content) else "not JSON"
        return ResponseParseError(
            f"HTTP {status} response is {kind}; ModelsLab fetch endpoints answer JSON "
            "(is base_url right?)",
            excerpt=excerpt_of(content),
            status_code=status,
            request_id=request_id,
        )
    if not isinstance(body, dict):
        return ResponseParseError(
            f"expected a JSON object, got {type(body).__name__}",
            excerpt=excerpt_of(content),
            status_code=status,
            request_id=request_id,
        )
    return body


def _status_error(
    raw: RawResponse, content: bytes, *, request_id: str | None, now: float
) -> ModelsLabError:
    status = raw.status_code
    response = raw.to_httpx(content)  # for users: the response, minus our request's body
    if status < 400:
        location = raw.headers.get("location", "<no Location header>")
        return APIStatusError(
            f"HTTP {status} redirect to {location!r} was not followed, because the request "
            "body carries the API key; point base_url at the final address",
            response=response,
            request_id=request_id,
        )
    if status in (401, 403):
        return AuthenticationError(
            f"HTTP {status}: the server rejected the API key; check api_key= or MODELSLAB_API_KEY",
            response=response,
            request_id=request_id,
        )
    retry_after = parse_retry_after(raw.headers.get("retry-after"), now=now)
    detail = (
        "an HTML error page from an edge proxy"
        if is_html(raw.headers, content)
        else repr(excerpt_of(content))
    )
    if status == 429:
        wait = "" if retry_after is None else f"; the server asked to wait {retry_after:g} s"
        return RateLimitError(
            f"HTTP 429 rate limited{wait}; lower concurrency or try again later",
            response=response,
            request_id=request_id,
            retry_after=retry_after,
        )
    return APIStatusError(
        f"HTTP {status} {response.reason_phrase}: {detail}",
        response=response,
        request_id=request_id,
        retry_after=retry_after,
    )
