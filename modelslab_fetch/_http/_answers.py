"""The one place that decides what an answer means: a result body, or which of our errors.

Two decisions live here and nowhere else:

- `ERROR_TABLE`: which (HTTP status, body message) is which error. ModelsLab reports
  errors both ways, with HTTP statuses (newer endpoints) and as HTTP 200 bodies with
  `"status": "error"` (older ones), so every rule is about the status *and* the words.
- `is_transient`: which errors are worth asking again, on evidence: network trouble,
  timeouts, overload and rate limits are; everything the server said about the request
  or the account, certificate failures and hosts that do not exist are not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CertificateVerificationError,
    HostNotFoundError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
    ResponseParseError,
)
from .._retry_policy import DEFAULT_RETRY_STATUSES
from .._server_json import (
    TOO_DEEP,
    bracket_count_allows,
    may_hold_surrogates,
    nested_deeper_than,
    well_formed,
)
from ._backends._contract import RawResponse
from ._retry_after import stated_wait

__all__ = [
    "ERROR_TABLE",
    "ErrorRule",
    "decode_response",
    "error_in_body",
    "excerpt_of",
    "is_transient",
    "transient_status",
    "unchanged",
]

EXCERPT_CHARS = 200

# Body statuses that can carry an error about the request rather than a job's state.
_ERROR_BODY = frozenset({"error"})
_ERROR_OR_FAILED_BODY = frozenset({"error", "failed"})
_PLAIN_STATUSES = frozenset({"success", "processing"})
_CLIENT_ERRORS = frozenset(range(400, 500))

_KEY_WORDS = (
    r"(invalid|missing|wrong|expired|revoked|incorrect|no)\s+api[\s_-]*key"
    r"|api[\s_-]*key\s+(is\s+)?(invalid|missing|required|not\s+valid|not\s+found|expired|revoked)"
    r"|unauthenticated|unauthori[sz]ed"
)


@dataclass(frozen=True)
class ErrorRule:
    """One row of the error table: when it applies, which error, and what to tell the user.

    A rule applies to an HTTP status in `statuses` (an error body sent with HTTP 2xx
    counts as 200, if its `status` is in `body_statuses`) whose message matches `words`
    (None: any message, or none).
    """

    error: type[APIStatusError] | type[AuthenticationError]
    statuses: frozenset[int]
    words: re.Pattern[str] | None
    advice: str
    body_statuses: frozenset[str] = _ERROR_BODY

    def matches(self, status: int, body_status: str | None, message: str) -> bool:
        """Whether this rule describes the answer."""
        if status not in self.statuses:
            return False
        if status < 300 and body_status not in self.body_statuses:
            return False
        return self.words is None or self.words.search(message) is not None


_BODY_OR_4XX = frozenset({200}) | _CLIENT_ERRORS
_SLOW_DOWN = (
    "the server asks to slow down; lower max_concurrency or max_requests_per_second, "
    "or try again later"
)
_NO_CREDITS = (
    "no credits left on this ModelsLab account; add credits in your ModelsLab dashboard, "
    "then ask again (the queued jobs are kept)"
)


def _words(
    error: type[APIStatusError] | type[AuthenticationError],
    words: str,
    advice: str,
    body_statuses: frozenset[str] = _ERROR_OR_FAILED_BODY,
) -> ErrorRule:
    """A rule by what the server said, with any 4xx status or in a 200 error body."""
    return ErrorRule(error, _BODY_OR_4XX, re.compile(words, re.IGNORECASE), advice, body_statuses)


def _status(
    error: type[APIStatusError] | type[AuthenticationError], statuses: set[int], advice: str
) -> ErrorRule:
    """A rule by the HTTP status alone."""
    return ErrorRule(error, frozenset(statuses), None, advice)


ERROR_TABLE: tuple[ErrorRule, ...] = (
    # What the words say comes first: the same words arrive with different statuses.
    _words(
        RateLimitError,
        r"rate[\s_-]*limit|too many (requests|attempts)|queued requests allowed",
        _SLOW_DOWN,
    ),
    _words(
        AuthenticationError,
        _KEY_WORDS,
        "the server rejected the API key; check api_key= or MODELSLAB_API_KEY "
        "(a key that is revoked or expired must be replaced)",
    ),
    _words(
        InsufficientCreditsError,
        r"insufficient (credit|balance|fund)|not enough (credit|balance)|out of credit"
        r"|add more credits|no credits?\b|credits? (exhausted|expired)",
        _NO_CREDITS,
    ),
    _words(
        PermissionDeniedError,
        r"premium|subscription|upgrade your plan|not (available|allowed|included) (on|in|for) "
        r"your plan|plan does not",
        "this account's plan does not allow this call; upgrade the plan in your ModelsLab "
        "dashboard",
        _ERROR_BODY,
    ),
    _words(
        RequestNotFoundError,
        r"request\s*(id\s*)?not\s*found|no (such )?request|invalid request[\s_-]*id"
        r"|request[\s_-]*id (is )?(invalid|unknown)",
        "ModelsLab does not know this id: check that it is the `id` a generation request "
        "of this account returned; ids are not kept forever (outputs about 24 hours)",
    ),
    _words(
        BadRequestError,
        r"invalid api request|model[\s_-]*id not found|\bis required\b|\brequired\b.*\bfield\b"
        r"|validation|invalid (json|parameter|value|input)",
        "the server refused the request as malformed",
        _ERROR_BODY,
    ),
    # Then what the status says, when the words were not recognised.
    _status(RateLimitError, {429}, _SLOW_DOWN),
    _status(
        AuthenticationError,
        {401},
        "the server rejected the API key; check api_key= or MODELSLAB_API_KEY",
    ),
    _status(InsufficientCreditsError, {402}, _NO_CREDITS),
    _status(
        PermissionDeniedError,
        {403},
        "the server refused this call for this account (HTTP 403, not a key problem); "
        "check the plan in your ModelsLab dashboard",
    ),
    _status(
        RequestNotFoundError,
        {404, 410},
        "not found: either ModelsLab does not know this id, or base_url / the endpoint "
        "path is wrong",
    ),
    _status(BadRequestError, {400, 422}, "the server refused the request as malformed"),
)
"""Read top to bottom; the first rule that matches an answer decides its error. An answer
no rule matches is an `APIStatusError` (non-2xx) or a result (2xx)."""


def is_transient(
    error: BaseException,
    *,
    statuses: frozenset[int] = DEFAULT_RETRY_STATUSES,
    edge_pages: bool = True,
) -> bool:
    """Whether `error` is worth asking again later: the one rule, written once.

    Transient: connection resets and refusals, timeouts, temporary DNS failures, rate
    limits in any form, the HTTP `statuses` (by default 408, 500, 502, 503, 504, 520-524)
    and, with `edge_pages`, any other 5xx HTML edge page. Not transient: certificate
    failures, hosts that do not exist, every other 4xx, request- and account-level
    errors, unreadable 2xx answers. A `RetryPolicy` supplies `statuses` and `edge_pages`.
    """
    if isinstance(error, CertificateVerificationError | HostNotFoundError):
        return False
    if isinstance(error, APIConnectionError | RateLimitError):
        return True
    if type(error) is not APIStatusError:  # the named subclasses are all permanent
        return False
    response = error.response
    return transient_status(
        error.status_code, response.headers, response.content, statuses, edge_pages
    )


def transient_status(
    status: int, headers: Mapping[str, str], content: bytes, statuses: frozenset[int], edge: bool
) -> bool:
    """Whether an HTTP error status is worth asking again (for API calls and downloads).

    One of `statuses`; or, with `edge`, any other 5xx answered with an HTML page: other
    5xx (501 Not Implemented, 505, Cloudflare's 530) say the request can never work,
    unless an edge proxy answered with its overload page.
    """
    return status in statuses or (edge and status >= 500 and is_html(headers, content))


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


def unchanged(value: Any) -> Any:
    """`value` itself: the `clean` of an answer that needs no cleaning."""
    return value


def decode_response(
    raw: RawResponse,
    content: bytes,
    *,
    request_id: str | None,
    now: float,
    clean: Callable[[Any], Any] = unchanged,
) -> dict[str, Any] | ModelsLabError:
    """Return the JSON object a 2xx response carries, or the error the response stands for.

    `content` is the body, already redacted as bytes; `clean` redacts the decoded JSON
    before anything reads it (an escape may spell the key in a way no byte-level match
    saw). `now` (epoch seconds) dates `Retry-After`.
    `request_id` is the id the caller asked about, named by every error (never the
    body's own `id`). The caller decides whether an error is worth retrying
    (`is_transient`).
    """
    status = raw.status_code
    body, parse_error = _json_object(content)
    if body is not None and clean is not unchanged:
        body = dict(clean(body))
    if status >= 300:
        return _status_error(raw, content, body, request_id=request_id, now=now)
    if parse_error is not None:
        if parse_error is TOO_DEEP:
            kind = TOO_DEEP
            said = f"HTTP {status} response is {TOO_DEEP}"
        else:
            kind = "an HTML page" if is_html(raw.headers, content) else parse_error
            said = (
                f"HTTP {status} response is {kind}; ModelsLab fetch endpoints answer JSON "
                "(is base_url right?)"
            )
        return ResponseParseError(
            said,
            excerpt=excerpt_of(content),
            status_code=status,
            request_id=request_id,
            problem=kind,
        )
    assert body is not None  # noqa: S101 - no parse error means an object
    body_status = body.get("status")
    if type(body_status) is str and body_status in _PLAIN_STATUSES:
        return body  # "success", "processing": no rule to look up
    if isinstance(body_status, str) and body_status.strip().lower() in _ERROR_OR_FAILED_BODY:
        rule = _rule_for(200, body_status.strip().lower(), _message_of(body))
        if rule is not None:
            return _error_from(rule, raw, content, body, request_id=request_id, now=now)
    return body


def error_in_body(
    body: Mapping[str, Any],
    *,
    request_id: str | None,
    now: float,
    url: str,
    clean: Callable[[Any], Any] = unchanged,
) -> ModelsLabError | None:
    """The error a decoded body stands for by the same table as any answer, or None.

    For a body that did not come with its HTTP answer (what a generation request
    returned, handed to `wait_for`): read as an HTTP 200 error body is, so
    `{"status": "error", "message": "Invalid Api Key"}` is an `AuthenticationError` and a
    queue-limit body a `RateLimitError` with its `retry_after`. A body with no `status`
    at all is judged by its words alone. None: no rule matches (a job's own failure, a
    result). `url` is where the body is said to come from, for the error's `response`.
    """
    status = body.get("status")
    if status is None:
        body_status = "error"
    elif isinstance(status, str) and status.strip().lower() in _ERROR_OR_FAILED_BODY:
        body_status = status.strip().lower()
    else:
        return None
    cleaned = dict(clean(dict(body)))
    rule = _rule_for(200, body_status, _message_of(cleaned))
    if rule is None:
        return None
    content = json.dumps(cleaned, ensure_ascii=False, default=str).encode("utf-8", "replace")
    raw = RawResponse(200, {}, content, url)
    return _error_from(
        rule, raw, content, cleaned, request_id=request_id, now=now, where="generation response"
    )


def _json_object(content: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        # What json.loads(bytes) does for UTF-8 without a BOM (nearly every answer),
        # without its Python-level sniffing of the encoding.
        head = content[:4]
        if b"\x00" in head or head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            value = json.loads(content)
        else:
            value = json.loads(content.decode("utf-8", "surrogatepass"))
    except RecursionError:  # nesting deeper than json's own guard (Python's stack)
        return None, TOO_DEEP
    except ValueError:
        return None, "not JSON"
    # Bounded here, where every answer enters: redaction, parsing, excerpts, logs and
    # results files all walk the value afterwards (see _server_json).
    if not bracket_count_allows(content) and nested_deeper_than(value):
        return None, TOO_DEEP
    if not isinstance(value, dict):
        return None, f"JSON but not an object (expected a JSON object, got {type(value).__name__})"
    # Half an emoji (a lone surrogate) becomes U+FFFD here, once, so that every body the
    # transport returns is writable by any UTF-8 writer; and the result built from it
    # needs no walk of its own (see `FetchResult.from_body`).
    if may_hold_surrogates(content):
        value = well_formed(value)
    return value, None


def _message_of(body: Mapping[str, Any] | None) -> str:
    """The server's words, wherever it put them, as one text to match rules against."""
    if body is None:
        return ""
    parts = []
    for name in ("message", "messege", "error", "errors", "detail"):
        value = body.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, Mapping | list):
            if isinstance(value, Mapping) and name in ("message", "messege", "errors"):
                parts.append("validation " + _compact(value))
            else:
                parts.append(_compact(value))
    return " | ".join(parts)[:2000]


def _compact(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)[:1000]
    except (ValueError, TypeError, RecursionError):
        return ""


def _rule_for(status: int, body_status: str | None, message: str) -> ErrorRule | None:
    for rule in ERROR_TABLE:
        if rule.matches(status, body_status, message):
            return rule
    return None


def _status_error(
    raw: RawResponse,
    content: bytes,
    body: dict[str, Any] | None,
    *,
    request_id: str | None,
    now: float,
) -> ModelsLabError:
    status = raw.status_code
    if status < 400:
        location = raw.headers.get("location", "<no Location header>")
        return APIStatusError(
            f"HTTP {status} redirect to {location!r} was not followed, because the request "
            "body carries the API key; point base_url at the final address",
            response=raw.to_httpx(content),
            request_id=request_id,
            body=body,
        )
    body_status = body.get("status") if body is not None else None
    rule = _rule_for(
        status, body_status if isinstance(body_status, str) else None, _message_of(body)
    )
    if rule is not None:
        return _error_from(rule, raw, content, body, request_id=request_id, now=now)
    response = raw.to_httpx(content)
    detail = (
        "an HTML error page from an edge proxy"
        if is_html(raw.headers, content)
        else repr(excerpt_of(content))
    )
    return APIStatusError(
        f"HTTP {status} {response.reason_phrase}: {detail}",
        response=response,
        request_id=request_id,
        retry_after=stated_wait(raw.headers, body, now=now),
        body=body,
    )


def _error_from(
    rule: ErrorRule,
    raw: RawResponse,
    content: bytes,
    body: dict[str, Any] | None,
    *,
    request_id: str | None,
    now: float,
    where: str | None = None,
) -> ModelsLabError:
    response = raw.to_httpx(content)
    said = _message_of(body) or excerpt_of(content)
    if where is None:
        where = f"HTTP {raw.status_code}" + (" error body" if raw.status_code < 300 else "")
    if rule.error is AuthenticationError:
        return AuthenticationError(
            f"{rule.advice} ({where}: {said[:EXCERPT_CHARS]!r})",
            request_id=request_id,
            response=response,
            body=body,
        )
    retry_after = stated_wait(raw.headers, body, now=now)
    waiting = ""
    if rule.error is RateLimitError and retry_after is not None:
        waiting = f"; the server asked to wait {retry_after:g} s"
    error_class: type[APIStatusError] = rule.error  # type: ignore[assignment]
    return error_class(
        f"{rule.advice}{waiting} ({where}: {said[:EXCERPT_CHARS]!r})",
        response=response,
        request_id=request_id,
        retry_after=retry_after,
        body=body,
    )
