"""Parsing response bodies: every status and every quirk the wire notes list."""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import pydantic
import pytest
from pydantic import Field, PrivateAttr

from modelslab_fetch import FetchResult, Status
from modelslab_fetch._server_json import well_formed

SUCCESS = {
    "status": "success",
    "generationTime": 1.83,
    "id": 13443927,
    "output": ["https://cdn.example/generations/6ef3f81f-0.png"],
    "proxy_links": ["https://proxy.example/6ef3f81f-0.png"],
    "meta": {"prompt": "a cat", "seed": 42},
    "nsfw_content_detected": False,
    "webhook_status": "",
    "tip": "Get 20% off",
}

PROCESSING = {
    "status": "processing",
    "tip": "hold on",
    "eta": 12.5,
    "messege": "Try to fetch request after seconds estimated",
    "fetch_result": "https://modelslab.com/api/v6/images/fetch",
    "id": 13443927,
    "output": [],
    "meta": {"prompt": "a cat"},
    "future_links": ["https://cdn.example/generations/6ef3f81f-0.png"],
}


def parse(body: dict[str, Any], request_id: str = "13443927") -> FetchResult:
    return FetchResult.from_body(body, request_id=request_id)


def test_success_body_gives_every_documented_field() -> None:
    result = parse(SUCCESS)
    assert result.status is Status.SUCCESS
    assert result.succeeded and result.finished
    assert result.id == "13443927"
    assert result.output == ["https://cdn.example/generations/6ef3f81f-0.png"]
    assert result.proxy_links == ["https://proxy.example/6ef3f81f-0.png"]
    assert result.generation_time == pytest.approx(1.83)
    assert result.meta == {"prompt": "a cat", "seed": 42}
    assert result.nsfw_content_detected is False
    assert result.webhook_status == ""
    assert result.tip == "Get 20% off"
    assert result.eta is None
    assert result.raw == SUCCESS


def test_processing_body_with_misspelt_message_and_future_links() -> None:
    result = parse(PROCESSING)
    assert result.status is Status.PROCESSING
    assert not result.finished and not result.succeeded
    assert result.eta == 12.5
    assert result.message == "Try to fetch request after seconds estimated"
    assert result.future_links == ["https://cdn.example/generations/6ef3f81f-0.png"]
    assert result.output == []
    assert result.fetch_result == "https://modelslab.com/api/v6/images/fetch"


@pytest.mark.parametrize("status", ["error", "failed"])
def test_error_and_failed_are_finished_but_not_succeeded(status: str) -> None:
    result = parse({"status": status, "message": "boom"})
    assert result.status is Status(status)
    assert result.finished and not result.succeeded
    assert result.message == "boom"


def test_seed_example_bodies_parse() -> None:
    images = parse({"status": "success", "id": 13443927, "output": ["https://x/0.png"]})
    upscaled = parse({"status": "success", "id": 12202888, "output": ["https://x/1.png"]})
    assert (images.id, upscaled.id) == ("13443927", "12202888")


def test_message_wins_over_messege_when_both_are_sent() -> None:
    assert parse({"status": "error", "message": "right", "messege": "wrong"}).message == "right"


@pytest.mark.parametrize("raw_id", [13443927, "13443927", 13443927.0])
def test_id_is_always_text(raw_id: object) -> None:
    assert parse({"status": "success", "id": raw_id}).id == "13443927"


def test_missing_or_null_id_falls_back_to_the_requested_id() -> None:
    assert parse({"status": "error", "message": "x"}, request_id="77").id == "77"
    assert parse({"status": "error", "id": None}, request_id="77").id == "77"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12.5, 12.5),
        (3, 3.0),
        ("12.5", 12.5),
        (" 7 ", 7.0),
        ("soon", None),
        (None, None),
        (math.nan, None),
        ("inf", None),
        (-4, 0.0),
        (True, None),
        ([1], None),
    ],
)
def test_eta_is_lenient_because_it_is_only_an_estimate(raw: object, expected: float | None) -> None:
    assert parse({"status": "processing", "eta": raw}).eta == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), ("true", True), ("False", False), (0, False), (1, True), ("", None)],
)
def test_string_booleans_are_coerced(raw: object, expected: bool | None) -> None:
    assert (
        parse({"status": "success", "nsfw_content_detected": raw}).nsfw_content_detected is expected
    )


def test_numeric_strings_are_coerced() -> None:
    assert parse({"status": "success", "generationTime": "1.83"}).generation_time == 1.83


def test_unknown_fields_are_kept_not_rejected() -> None:
    result = parse({**SUCCESS, "new_field": {"a": 1}, "queue_position": 3})
    assert result.model_extra == {"new_field": {"a": 1}, "queue_position": 3}
    assert result.raw["queue_position"] == 3


@pytest.mark.parametrize("raw_status", ["queued", "QUEUED", "rendering", ""])
def test_unknown_status_reads_as_processing_and_keeps_the_word(raw_status: str) -> None:
    result = parse({"status": raw_status})
    assert result.status is Status.PROCESSING
    assert not result.finished
    assert result.raw_status == raw_status


def test_status_is_case_insensitive() -> None:
    assert parse({"status": "Success"}).status is Status.SUCCESS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, []), ("", []), ("https://x/0.png", ["https://x/0.png"]), (["a", "b"], ["a", "b"])],
)
def test_output_lists_accept_null_and_a_lone_url(raw: object, expected: list[str]) -> None:
    assert parse({"status": "success", "output": raw}).output == expected


def test_structured_messages_are_kept_readable() -> None:
    result = parse({"status": "error", "message": {"request_id": ["required"]}})
    assert result.message == '{"request_id": ["required"]}'


@pytest.mark.parametrize("meta", ["", []])
def test_empty_meta_placeholders_read_as_none(meta: object) -> None:
    assert parse({"status": "success", "meta": meta}).meta is None


def test_numeric_scalars_in_text_fields_become_text() -> None:
    assert parse({"status": "success", "tip": 5, "webhook_status": 200}).webhook_status == "200"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": None},
        {"status": 1},
        {"status": ["success"]},
    ],
)
def test_wrong_shapes_raise_value_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is the ValueError
        parse(body)


def test_results_are_immutable() -> None:
    result = parse(SUCCESS)
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's frozen-instance ValidationError
        result.status = Status.ERROR  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        (["https://a/0.png", "https://a/1.png"], ["https://a/0.png", "https://a/1.png"]),
        ("https://a/0.png", ["https://a/0.png"]),
        (None, []),
        ("", []),
        ({"0": "https://a/0.png"}, ["https://a/0.png"]),
        ({"1": "https://a/1.png", "0": "https://a/0.png"}, ["https://a/0.png", "https://a/1.png"]),
        (
            {"10": "https://a/10.png", "2": "https://a/2.png"},
            ["https://a/2.png", "https://a/10.png"],
        ),
        ([1, "https://a/0.png", None, ""], ["https://a/0.png"]),
    ],
)
@pytest.mark.parametrize("field", ["output", "proxy_links", "future_links"])
def test_every_shape_of_a_url_list_reads_as_a_list(
    field: str, value: object, urls: list[str]
) -> None:
    result = parse({"status": "success", field: value})
    assert getattr(result, field) == urls
    assert result.raw[field] == value  # the body as sent is kept


@pytest.mark.parametrize("body_id", ["", None, "  ", {"n": 1}, [1], True])
def test_an_unusable_id_becomes_the_id_asked_about(body_id: object) -> None:
    result = FetchResult.from_body({"status": "failed", "id": body_id}, request_id="777")
    assert result.id == "777"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("meta", "not an object"),
        ("nsfw_content_detected", "perhaps"),
        ("generationTime", {"s": 1}),
        ("tip", ["a", "b"]),
        ("webhook_status", {"x": 1}),
        ("fetch_result", ["x"]),
        ("output", 12),
        ("proxy_links", True),
    ],
)
def test_an_odd_optional_field_is_dropped_and_kept_in_raw(
    field: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="modelslab_fetch")
    result = parse({"status": "success", "id": 5, "output": ["https://a/0.png"], field: value})
    assert result.succeeded
    assert result.raw[field] == value
    dumped = result.model_dump()
    assert field not in dumped or dumped[field] in (None, [], ["https://a/0.png"])


def test_a_success_with_proxy_links_keyed_by_position_is_readable() -> None:
    # The shape the current flux docs show.
    body = {
        "status": "success",
        "id": 13443927,
        "output": ["https://pub.example/0.png"],
        "proxy_links": {"0": "https://proxy.example/0.png"},
    }
    result = parse(body)
    assert result.proxy_links == ["https://proxy.example/0.png"]


# Half an emoji: a lone surrogate is valid JSON, and Python decodes it, but no UTF-8
# writer can encode it.
HALF_EMOJI = json.loads(
    '{"status": "failed", "id": 7, "message": "GPU busy \\ud83d",'
    ' "meta": {"\\udc00": ["\\ud800", {"deep": "\\udfff"}], "prompt": "caf\\u00e9"},'
    ' "extra\\ud83d": "x\\ud83d", "tip": "\\ud83d\\ude00 whole"}'
)


def test_a_lone_surrogate_anywhere_reads_as_a_replacement_character() -> None:
    result = parse(HALF_EMOJI, "7")
    assert result.message == "GPU busy \ufffd"
    assert result.meta == {"\ufffd": ["\ufffd", {"deep": "\ufffd"}], "prompt": "café"}
    assert result.model_extra == {"extra\ufffd": "x\ufffd"}
    assert result.tip == "\U0001f600 whole"  # a whole pair is one character: kept
    assert result.raw is HALF_EMOJI  # the body exactly as received


def test_a_result_with_lone_surrogates_dumps_to_json_and_prints() -> None:
    result = parse(HALF_EMOJI, "7")
    dumped = json.loads(result.model_dump_json())
    assert dumped["message"] == "GPU busy \ufffd"
    assert dumped["extra\ufffd"] == "x\ufffd"
    for text in (result.model_dump_json(), repr(result), str(result.model_dump())):
        text.encode("utf-8")  # any UTF-8 writer takes it
    built = FetchResult.model_validate({"status": "failed", "id": "1", "message": "\udc80"})
    assert built.model_dump_json()  # not only from_body: every way in


def test_cleaning_text_walks_any_depth_without_recursion() -> None:
    deep: Any = "\ud83d"
    for _ in range(20_000):
        deep = [{"k": deep}]
    cleaned = well_formed(deep)
    for _ in range(20_000):
        cleaned = cleaned[0]["k"]
    assert cleaned == "\ufffd"
    clean = {"a": ["b", {"c": "café"}]}
    assert well_formed(clean) is clean  # nothing to replace: nothing copied


def test_a_subclass_of_yours_reads_leniently_and_keeps_its_own_private_attributes() -> None:
    class Mine(FetchResult):
        _seen: int = PrivateAttr(0)
        links: list[str] = Field(default_factory=list)  # read as the voice family's

    built = Mine(status="success", id="7")
    assert (built.raw, built.request_id, built.endpoint_name, built._seen) == ({}, "7", None, 0)
    body = {"status": "Success", "id": 8, "links": "https://x/a.wav", "eta": "3"}
    parsed = Mine.from_body(body, request_id="8", endpoint_name="voice")
    assert parsed._seen == 0 and parsed.raw is body and parsed.request_id == "8"
    assert parsed.links == ["https://x/a.wav"] and parsed.eta == 3.0
    assert parsed.endpoint_name == "voice"


def test_any_mapping_validates_leniently_and_any_bad_status_is_a_validation_error() -> None:
    read = FetchResult.model_validate(MappingProxyType({"status": "Success", "id": 5, "eta": "3"}))
    assert (read.status, read.id, read.eta) == (Status.SUCCESS, "5", 3.0)
    for status in (["x"], {"a": 1}, None, 3):
        with pytest.raises(pydantic.ValidationError):
            FetchResult.model_validate({"status": status, "id": "1"})
