"""Request ids: what is accepted, how it is normalised, and that bad ids send nothing."""

from __future__ import annotations

import pytest
import respx

from modelslab_fetch import AsyncModelsLab, InvalidRequestIdError
from modelslab_fetch._ids import MAX_REQUEST_ID_LENGTH, normalize_request_id


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (13443927, "13443927"),
        ("13443927", "13443927"),
        (0, "0"),
        ("  13443927\n", "13443927"),
        ("6ef3f81f-14e1-4835-b07a-e00dbe80b6ff", "6ef3f81f-14e1-4835-b07a-e00dbe80b6ff"),
        ("abc_DEF.123", "abc_DEF.123"),
    ],
)
def test_valid_ids_are_normalised_to_text(given: object, expected: str) -> None:
    assert normalize_request_id(given) == expected


BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("\t\n", id="only-whitespace"),
    pytest.param("12 34", id="inner-space"),
    pytest.param("12\t34", id="inner-tab"),
    pytest.param("12/34", id="slash"),
    pytest.param("../admin", id="traversal"),
    pytest.param("12\\34", id="backslash"),
    pytest.param("12?x=1", id="query"),
    pytest.param("12#frag", id="fragment"),
    pytest.param("12%2F34", id="percent-escape"),
    pytest.param("12\x0034", id="nul"),
    pytest.param("12\x1b[31m", id="escape-sequence"),
    pytest.param("12\u200b34", id="zero-width-format-char"),
    pytest.param("..", id="dot-dot"),
    pytest.param("x" * (MAX_REQUEST_ID_LENGTH + 1), id="too-long"),
    pytest.param(-5, id="negative-int"),
    pytest.param(True, id="bool"),
    pytest.param(1.5, id="float"),
    pytest.param(None, id="none"),
    pytest.param(b"123", id="bytes"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_rejected_with_a_value_error(bad: object) -> None:
    with pytest.raises(InvalidRequestIdError) as caught:
        normalize_request_id(bad)
    assert isinstance(caught.value, ValueError)
    assert "request id" in str(caught.value)


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("endpoint", ["images", "super_resolution"])
@pytest.mark.parametrize("call", ["fetch", "wait"])
async def test_bad_ids_send_nothing(
    bad: object, endpoint: str, call: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    catch_all = router.route().respond(200, json={"status": "success", "id": 1})
    resource = client.images if endpoint == "images" else client.enterprise.super_resolution
    with pytest.raises(InvalidRequestIdError):
        await getattr(resource, call)(bad)
    assert catch_all.call_count == 0


def test_huge_int_ids_are_invalid_ids() -> None:
    with pytest.raises(InvalidRequestIdError, match="at most"):
        normalize_request_id(10**5000)
