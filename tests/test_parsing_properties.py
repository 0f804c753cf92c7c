"""Property-based tests: whatever JSON (or bytes) arrives, parsing gives a result or our error."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_fetch import AuthenticationError, FetchResult, ResponseParseError
from modelslab_fetch._endpoints.table import ClientEndpoints
from modelslab_fetch._http._answers import decode_response
from modelslab_fetch._http._backends._contract import RawResponse
from modelslab_fetch._server_json import may_hold_surrogates, well_formed

FIELDS = [
    "status",
    "id",
    "output",
    "eta",
    "message",
    "messege",
    "generationTime",
    "proxy_links",
    "future_links",
    "meta",
    "nsfw_content_detected",
    "tip",
    "webhook_status",
    "fetch_result",
]
STATUSES = st.sampled_from(["success", "processing", "failed", "error", "queued", "SUCCESS", ""])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | STATUSES
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
BODIES = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=10)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_result(result: FetchResult) -> None:
    assert isinstance(result.id, str)
    assert all(isinstance(url, str) for url in result.output)
    assert result.eta is None or (math.isfinite(result.eta) and result.eta >= 0)
    assert result.message is None or isinstance(result.message, str)
    assert isinstance(result.raw, dict)


def outcome_of(body: dict[str, Any]) -> FetchResult | ResponseParseError | AuthenticationError:
    try:
        return ClientEndpoints.images.parse(body, request_id="7")
    except (ResponseParseError, AuthenticationError) as error:
        return error


@FAST
@given(BODIES)
def test_any_body_gives_a_result_or_a_parse_error(body: dict[str, Any]) -> None:
    outcome = outcome_of(body)
    if isinstance(outcome, ResponseParseError):
        assert outcome.request_id == "7"
        assert len(outcome.excerpt) <= 200
    elif isinstance(outcome, AuthenticationError):
        # the one designed exception: an error body saying the key is invalid
        assert "key" in str(body.get("message", body.get("messege", ""))).lower()
    else:
        check_result(outcome)


@FAST
@given(JSON)
def test_any_json_value_decodes_to_an_object_or_a_parse_error(value: Any) -> None:
    content = json.dumps(value).encode()
    raw = RawResponse(200, {"content-type": "application/json"}, content, "http://x/api")
    decoded = decode_response(raw, content, request_id="7", now=0.0)
    if isinstance(value, dict):
        assert decoded == json.loads(content)
    else:
        assert isinstance(decoded, ResponseParseError)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_an_object_or_a_parse_error(content: bytes) -> None:
    raw = RawResponse(200, {}, content, "http://x/api")
    decoded = decode_response(raw, content, request_id="7", now=0.0)
    assert isinstance(decoded, dict | ResponseParseError)


def test_runaway_nesting_is_a_parse_error() -> None:
    content = b"[" * 100_000 + b"]" * 100_000
    raw = RawResponse(200, {}, content, "http://x/api")
    assert isinstance(decode_response(raw, content, request_id="7", now=0.0), ResponseParseError)
    deep: Any = "x"
    for _ in range(2_000):
        deep = {"a": deep}
    assert isinstance(
        outcome_of({"status": "success", "meta": deep}), FetchResult | ResponseParseError
    )


# Any text, lone surrogates included, as every writer may put it on the wire: escaped
# (either case of hex), or raw UTF-8 bytes (json.loads decodes with "surrogatepass").
wire_texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)


def _wire_forms(value: object) -> list[bytes]:
    escaped = json.dumps(value)
    return [
        escaped.encode(),
        escaped.upper().replace("\\U", "\\u").encode(),  # \uD83D as much as \ud83d
        json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        json.dumps(value).encode("utf-16"),
    ]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(wire_texts, st.lists(wire_texts, max_size=3) | wire_texts, max_size=4))
def test_a_body_said_free_of_lone_surrogates_is_free_of_them(body: dict[str, Any]) -> None:
    # The byte test lets a decoded answer skip the walk for lone surrogates: it may say
    # "may" of a clean body, never "cannot" of a body that holds one.
    for content in _wire_forms(body):
        try:
            decoded = json.loads(content)
        except ValueError:
            continue  # upper-casing broke an escape other than \u: not JSON, not an answer
        if not may_hold_surrogates(content):
            assert well_formed(decoded) is decoded


def test_an_answer_holding_half_an_emoji_is_well_formed_from_the_transport_on() -> None:
    content = b'{"status": "success", "id": 1, "tip": "\\uD83D!", "meta": {"\\udc00": 1}}'
    raw = RawResponse(200, {}, content, "http://x/api")
    body = decode_response(raw, content, request_id="1", now=0.0)
    assert isinstance(body, dict)
    assert body["tip"] == "\ufffd!" and body["meta"] == {"\ufffd": 1}
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # any UTF-8 writer takes it
