"""Every endpoint of the table, on both clients; and `wait_for`, routed by the response."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from modelslab_fetch import (
    AsyncModelsLab,
    ConfigurationError,
    FetchEndpoint,
    FetchResource,
    FetchResult,
    ForeignFetchURLError,
    GenerationFailedError,
    ModelsLab,
    SyncFetchResource,
    ThreeDResult,
    VoiceResult,
    endpoint_table,
)
from modelslab_fetch._endpoints.table import ClientEndpoints, EnterpriseEndpoints
from tests.backends import both_backends, collect
from tests.conftest import API_KEY, AT_ETA, BASE_URL, FakeClock
from tests.loopback import LoopbackServer, hang_up

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends

TABLE = endpoint_table()
ENTERPRISE_SERVERS = [
    "super_resolution",
    "realtime",
    "image_editing",
    "interior",
    "video",
    "ultra_video",
    "image_to_video_ultra",
    "text_to_speech",
    "speech_to_text",
    "voice",
    "3d",
    "face_gen",
    "flux_headshot",
    "qwen",
    "flux",
    "flux_klein",
    "flux_kontext_dev",
    "z_image_turbo",
    "faceswap",
]
CALLS = ("fetch", "wait", "fetch_many", "wait_many")


def resource_at(client: object, dotted: str) -> Any:
    found: Any = client
    for part in dotted.split("."):
        found = getattr(found, part)
    return found


@pytest.fixture
def sync_client(clock: FakeClock, router: respx.MockRouter) -> Iterator[ModelsLab]:
    with ModelsLab(api_key=API_KEY, base_url=BASE_URL, clock=clock, poll_policy=AT_ETA) as c:
        yield c


def recorder(router: respx.MockRouter, answer: dict[str, Any]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    router.post(url__startswith=BASE_URL).mock(side_effect=respond)
    return seen


def test_the_table_holds_every_endpoint_of_the_wire_notes() -> None:
    top = {"images", "realtime", "image_editing", "video", "voice", "three_d", "faceswap"}
    expected = top | {"interior", "v7.images", "v7.video_fusion", "v7.voice"}
    expected |= {"enterprise.images"}
    expected |= {f"enterprise.{s.replace('3d', 'three_d')}" for s in ENTERPRISE_SERVERS}
    assert set(TABLE) == expected
    for server in ENTERPRISE_SERVERS:
        name = f"enterprise.{server.replace('3d', 'three_d')}"
        assert TABLE[name].path_template == f"/v1/enterprise/{server}/fetch/{{id}}"
    assert TABLE["enterprise.images"].id_field == "request_id"
    # Rows no public source shows are gone (docs/endpoints.md says which and why).
    assert not {"enterprise.pony", "enterprise.nano_banana"} & set(TABLE)
    assert not {"enterprise.krea_2_turbo", "enterprise.minimax_h3"} & set(TABLE)
    assert TABLE["images"].path_template == "/v6/images/fetch"
    assert TABLE["v7.video_fusion"].path_template == "/v7/video-fusion/fetch/{id}"


def test_both_clients_offer_exactly_the_table() -> None:
    assert endpoint_table(AsyncModelsLab) == TABLE
    assert endpoint_table(ModelsLab) == TABLE


@pytest.mark.parametrize("name", list(TABLE))
async def test_each_endpoint_sends_its_id_in_the_path_or_the_body_and_nothing_else(
    name: str, client: AsyncModelsLab, sync_client: ModelsLab, router: respx.MockRouter
) -> None:
    endpoint = TABLE[name]
    seen = recorder(router, {"status": "success", "id": "77-a", "output": ["https://x/a.bin"]})
    async_result = await resource_at(client, name).fetch("77-a")
    sync_result = resource_at(sync_client, name).fetch("77-a")
    expected_body = {"key": API_KEY}
    if endpoint.id_field is None:
        expected_url = BASE_URL + endpoint.path_template.replace("{id}", "77-a")
    else:
        expected_url = BASE_URL + endpoint.path_template
        expected_body[endpoint.id_field] = "77-a"
    assert len(seen) == 2
    for request in seen:
        assert request.method == "POST"
        assert str(request.url) == expected_url
        assert json.loads(request.content) == expected_body
    for result in (async_result, sync_result):
        assert type(result) is endpoint.result_model
        assert result.id == "77-a"


@pytest.mark.parametrize("name", list(TABLE))
def test_both_clients_offer_the_same_calls_with_the_same_signatures(name: str) -> None:
    async_client = AsyncModelsLab(api_key="k")
    with ModelsLab(api_key="k") as sync_client:
        async_resource = resource_at(async_client, name)
        sync_resource = resource_at(sync_client, name)
        assert isinstance(async_resource, FetchResource)
        assert isinstance(sync_resource, SyncFetchResource)
        for call in CALLS:
            async_sig = inspect.signature(getattr(async_resource, call))
            sync_sig = inspect.signature(getattr(sync_resource, call))
            assert list(async_sig.parameters.values()) == list(sync_sig.parameters.values())


def test_the_clients_share_every_public_call_and_signature() -> None:
    def calls(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    async_calls = calls(AsyncModelsLab)
    sync_calls = calls(ModelsLab)
    assert set(async_calls) - {"aclose"} == set(sync_calls) - {"close"}
    for name in ("wait_for", "wait_for_many", "download", "download_many"):
        assert list(async_calls[name].parameters.values()) == list(
            sync_calls[name].parameters.values()
        )


def test_resources_are_made_once_per_client() -> None:
    client = AsyncModelsLab(api_key="k")
    assert client.video is client.video
    assert client.enterprise is client.enterprise
    assert client.enterprise.three_d is client.enterprise.three_d
    assert client.video is not AsyncModelsLab(api_key="k").video
    assert "three_d" in repr(client.enterprise)


async def test_a_made_up_endpoint_is_one_row_and_works_on_both_clients(
    monkeypatch: pytest.MonkeyPatch,
    client: AsyncModelsLab,
    sync_client: ModelsLab,
    router: respx.MockRouter,
) -> None:
    row = FetchEndpoint("/v9/hologram/fetch/{id}", result_model=VoiceResult, output="audio")
    monkeypatch.setattr(EnterpriseEndpoints, "hologram", row, raising=False)
    seen = recorder(router, {"status": "success", "id": 5, "output": [], "audio_time": "2.5"})
    assert (await client.enterprise.hologram.fetch(5)).audio_time == 2.5  # type: ignore[attr-defined]
    assert sync_client.enterprise.hologram.wait(5).status.value == "success"  # type: ignore[attr-defined]
    queued = {"status": "processing", "id": 5, "fetch_result": f"{BASE_URL}/v9/hologram/fetch/5"}
    assert isinstance(await client.wait_for(queued), VoiceResult)
    assert [str(r.url) for r in seen] == [f"{BASE_URL}/v9/hologram/fetch/5"] * 3
    assert endpoint_table()["enterprise.hologram"] is row


async def test_family_results_keep_their_own_fields(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(f"{BASE_URL}/v6/voice/fetch/1").respond(
        json={
            "status": "success",
            "id": 1,
            "output": ["https://x/1.wav"],
            "links": ["https://y/1.wav"],
            "audio_time": "3.25",
        }
    )
    router.post(f"{BASE_URL}/v6/3d/fetch/2").respond(
        json={
            "status": "processing",
            "id": 2,
            "eta": 4,
            "output": "",
            "extra_assets": ["https://x/2.png", {"kind": "texture"}],
        }
    )
    voice = await client.voice.fetch(1)
    assert isinstance(voice, VoiceResult)
    assert (voice.links, voice.audio_time) == (["https://y/1.wav"], 3.25)
    model = await client.three_d.fetch(2)
    assert isinstance(model, ThreeDResult)
    assert model.extra_assets == ["https://x/2.png", {"kind": "texture"}]
    assert isinstance(model, FetchResult)


def test_odd_family_fields_do_not_make_a_result_unreadable() -> None:
    voice = VoiceResult.from_body(
        {"status": "success", "links": {"0": "https://a"}, "audio_time": "n/a"}, request_id="1"
    )
    assert (voice.links, voice.audio_time) == (["https://a"], None)
    model = ThreeDResult.from_body({"status": "processing", "extra_assets": ""}, request_id="2")
    assert model.extra_assets == []
    model = ThreeDResult.from_body({"status": "processing", "extra_assets": "u"}, request_id="2")
    assert model.extra_assets == ["u"]


# wait_for ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("video", FetchResult),
        ("voice", VoiceResult),
        ("enterprise.three_d", ThreeDResult),
        ("v7.video_fusion", FetchResult),
    ],
)
async def test_wait_for_polls_the_endpoint_its_response_names_after_its_eta(
    name: str,
    model: type[FetchResult],
    client: AsyncModelsLab,
    router: respx.MockRouter,
    clock: FakeClock,
) -> None:
    path = TABLE[name].path_template.replace("{id}", "123")
    route = router.post(BASE_URL + path).respond(
        json={"status": "success", "id": 123, "output": ["https://cdn/123.bin"]}
    )
    queued = {"status": "processing", "id": 123, "eta": 20, "fetch_result": BASE_URL + path}
    result = await client.wait_for(queued)
    assert type(result) is model
    assert result.output == ["https://cdn/123.bin"]
    assert route.call_count == 1
    assert clock.sleeps == [20.0]  # the first poll waited for the response's own eta
    assert json.loads(route.calls[0].request.content) == {"key": API_KEY}


async def test_wait_for_reads_the_path_form_of_the_images_fetch(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    seen = recorder(router, {"status": "success", "id": "9", "output": ["u"]})
    queued = {"status": "processing", "eta": 1, "fetch_result": f"{BASE_URL}/v6/images/fetch/9"}
    assert (await client.wait_for(queued)).id == "9"
    assert str(seen[0].url) == f"{BASE_URL}/v6/images/fetch"
    assert json.loads(seen[0].content) == {"key": API_KEY, "request_id": "9"}


async def test_wait_for_reads_older_paths_and_a_fetch_result_instance(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(f"{BASE_URL}/v6/faceswap/fetch/4").respond(
        json={"status": "success", "id": 4, "output": ["u"]}
    )
    queued = FetchResult.from_body(
        {"status": "processing", "id": 4, "fetch_result": f"{BASE_URL}/v6/deepfake/fetch/4"},
        request_id="4",
    )
    assert (await client.wait_for(queued)).succeeded
    assert route.call_count == 1


async def test_wait_for_returns_a_success_at_once_without_a_request(
    client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    done = {
        "status": "success",
        "id": 8,
        "output": ["https://cdn/8.mp4"],
        "fetch_result": f"{BASE_URL}/v6/video/fetch/8",
    }
    result = await client.wait_for(done)
    assert result.output == ["https://cdn/8.mp4"]
    # No route is mocked: any request would have failed the test (assert_all_mocked).
    assert router.calls.call_count == 0
    assert clock.sleeps == []
    # Even with nothing to route it by, a success needs no request.
    assert (await client.wait_for({"status": "success", "id": 3, "output": []})).id == "3"


async def test_wait_for_raises_for_a_failed_response_without_a_request(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    failed = {
        "status": "failed",
        "id": 8,
        "message": "out of memory",
        "fetch_result": f"{BASE_URL}/v6/video/fetch/8",
    }
    with pytest.raises(GenerationFailedError, match="out of memory"):
        await client.wait_for(failed)
    assert router.calls.call_count == 0


async def test_wait_for_with_an_explicit_endpoint_ignores_fetch_result(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(f"{BASE_URL}/v6/voice/fetch/6").respond(
        json={"status": "success", "id": 6, "output": ["u"]}
    )
    queued = {"status": "processing", "id": 6, "fetch_result": "https://evil.example/v6/x"}
    assert isinstance(await client.wait_for(queued, endpoint="voice"), VoiceResult)
    assert isinstance(await client.wait_for(queued, endpoint=ClientEndpoints.voice), VoiceResult)
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("queued", "words"),
    [
        ({"status": "processing", "id": 1}, "no fetch_result"),
        (
            {"status": "processing", "id": 1, "fetch_result": f"{BASE_URL}/v6/nope/fetch/1"},
            "no known fetch endpoint",
        ),
        ({"status": "processing", "fetch_result": f"{BASE_URL}/v6/images/fetch"}, "no request id"),
        ("13443927", "not str"),
    ],
)
async def test_wait_for_says_what_to_do_when_it_cannot_route(
    queued: Any, words: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    with (
        pytest.raises(ConfigurationError, match=words)
        if words != "no request id"
        else (pytest.raises(Exception, match=words))
    ):
        await client.wait_for(queued)
    with pytest.raises(ConfigurationError, match="one of: images, realtime"):
        await client.wait_for({"status": "processing", "id": 1}, endpoint="holograms")
    assert router.calls.call_count == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://modelslab.com.evil.example/api/v6/video/fetch/1",
        "http://modelslab.com/api/v6/video/fetch/1",
        "https://modelslab.com:8443/api/v6/video/fetch/1",
        "https://modelslab.com/v6/video/fetch/1",
        "https://modelslab.com/apix/v6/video/fetch/1",
        "https://user@[::1/api/v6/video/fetch/1",
    ],
)
async def test_wait_for_refuses_a_fetch_result_outside_base_url(
    url: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    with pytest.raises(ForeignFetchURLError, match="Nothing was sent"):
        await client.wait_for({"status": "processing", "id": 1, "fetch_result": url})
    assert router.calls.call_count == 0


# What a generation request answers instead of a job is read through the error table, with
# the server's words: never a ConfigurationError asking for endpoint=.
GENERATION_ERRORS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "bad-key",
        {"status": "error", "message": "Invalid Api Key"},
        "AuthenticationError",
        "Invalid Api Key",
    ),
    (
        "queue-limit",
        {
            "status": "error",
            "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
            "retry_after": 30,
        },
        "RateLimitError",
        "Maximum 5 queued requests allowed",
    ),
    (
        "validation",
        {"status": "error", "message": {"prompt": ["The prompt field is required."]}},
        "BadRequestError",
        "The prompt field is required.",
    ),
    ("no-status", {"message": "Unauthenticated."}, "AuthenticationError", "Unauthenticated"),
    (
        "failed",
        {"status": "failed", "message": "GPU out of memory"},
        "GenerationFailedError",
        "GPU out of memory",
    ),
    (
        "error-misspelt",
        {"status": "error", "messege": "Something went wrong while generating"},
        "GenerationFailedError",
        "Something went wrong while generating",
    ),
]


@pytest.mark.parametrize(
    ("queued", "error", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in GENERATION_ERRORS],
)
async def test_wait_for_reads_an_error_response_through_the_error_table(
    queued: dict[str, Any], error: str, words: str, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    import modelslab_fetch

    with pytest.raises(getattr(modelslab_fetch, error)) as raised:
        await client.wait_for(queued)
    assert type(raised.value).__name__ == error
    assert words in str(raised.value)
    assert not isinstance(raised.value, ConfigurationError)
    if error == "RateLimitError":
        assert raised.value.retry_after == 30.0
    assert router.calls.call_count == 0


def test_the_blocking_wait_for_reads_an_error_response_too(sync_client: ModelsLab) -> None:
    from modelslab_fetch import AuthenticationError

    with pytest.raises(AuthenticationError, match="Invalid Api Key"):
        sync_client.wait_for({"status": "error", "message": "Invalid Api Key"})


async def test_an_error_response_never_shows_the_key(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    from modelslab_fetch import AuthenticationError

    echoed = {"status": "error", "message": f"Invalid Api Key {API_KEY}", "key": API_KEY}
    with pytest.raises(AuthenticationError) as raised:
        await client.wait_for(echoed)
    assert API_KEY not in str(raised.value)
    assert API_KEY not in repr(raised.value.body)


async def test_a_response_nested_too_deeply_is_a_parse_error(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    from modelslab_fetch import ResponseParseError

    deep: Any = []
    for _ in range(600):
        deep = [deep]
    queued = {"status": "processing", "id": 1, "fetch_result": f"{BASE_URL}/v6/video/fetch/1"}
    with pytest.raises(ResponseParseError, match="nested more than 64 levels"):
        await client.wait_for({**queued, "meta": deep})
    outcomes = await collect(client.wait_for_many([{**queued, "meta": deep}]))
    assert isinstance(outcomes[0].error, ResponseParseError)
    assert router.calls.call_count == 0


async def test_wait_for_many_gives_error_responses_their_own_errors_and_goes_on(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:

    route = router.post(f"{BASE_URL}/v6/video/fetch/7").respond(
        json={"status": "success", "id": 7, "output": ["https://cdn/7.mp4"]}
    )
    good = {"status": "processing", "id": 7, "fetch_result": f"{BASE_URL}/v6/video/fetch/7"}
    items: list[dict[str, Any]] = [queued for _name, queued, _error, _words in GENERATION_ERRORS]
    outcomes = await collect(client.wait_for_many([*items, good], ordered=True))
    expected = [error for _name, _queued, error, _words in GENERATION_ERRORS]
    assert [type(o.error).__name__ for o in outcomes[:-1]] == expected
    for outcome, (_name, _queued, _error, words) in zip(outcomes, GENERATION_ERRORS, strict=False):
        assert words in str(outcome.error)
    # The rejected key of an input is that input's answer: no request was sent, so it
    # does not stop the batch as an account error met by a fetch would.
    assert outcomes[-1].ok
    assert route.call_count == 1


def test_a_foreign_fetch_result_on_another_loopback_address_sees_no_connection() -> None:
    try:
        foreign = LoopbackServer(hang_up(), host="127.0.0.2").start()
    except OSError:  # pragma: no cover - a system without 127.0.0.0/8 routed
        pytest.skip("127.0.0.2 is not available here")
    own = LoopbackServer(hang_up()).start()
    try:
        with ModelsLab(api_key=API_KEY, base_url=f"http://127.0.0.1:{own.port}/api") as client:
            url = f"http://127.0.0.2:{foreign.port}/api/v6/video/fetch/1"
            with pytest.raises(ForeignFetchURLError) as raised:
                client.wait_for({"status": "processing", "id": 1, "eta": 0, "fetch_result": url})
            outcomes = list(
                client.wait_for_many([{"status": "processing", "id": 1, "fetch_result": url}])
            )
        assert API_KEY not in str(raised.value)
        assert isinstance(outcomes[0].error, ForeignFetchURLError)
        threading.Event().wait(0.2)  # time for a connection, had one been made, to arrive
        assert (foreign.connections, own.connections) == (0, 0)
    finally:
        foreign.stop()
        own.stop()


async def test_wait_for_many_gives_one_outcome_per_input(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    video = router.post(f"{BASE_URL}/v6/video/fetch/1").respond(
        json={"status": "success", "id": 1, "output": ["https://cdn/1.mp4"]}
    )
    voice = router.post(f"{BASE_URL}/v6/voice/fetch/1").respond(
        json={"status": "success", "id": 1, "output": ["https://cdn/1.wav"]}
    )
    failed = router.post(f"{BASE_URL}/v6/3d/fetch/3").respond(
        json={"status": "failed", "id": 3, "message": "no"}
    )

    def processing(path: str, rid: int) -> dict[str, Any]:
        return {"status": "processing", "id": rid, "eta": 2, "fetch_result": BASE_URL + path}

    items: list[Any] = [
        processing("/v6/video/fetch/1", 1),
        {
            "status": "success",
            "id": 2,
            "output": ["https://cdn/2.png"],
            "fetch_result": f"{BASE_URL}/v6/images/fetch/2",
        },
        processing("/v6/voice/fetch/1", 1),  # the same id on another endpoint
        processing("/v6/3d/fetch/3", 3),
        {"status": "processing", "id": 4, "fetch_result": "https://other.example/api/v6/x/4"},
        {"status": "processing"},
        42,
        processing("/v6/video/fetch/1", 1),  # a repeat: answered by the same work
    ]
    outcomes = await collect(client.wait_for_many(iter(items), ordered=True))
    assert [o.index for o in outcomes] == list(range(len(items)))
    assert [o.ok for o in outcomes] == [True, True, True, False, False, False, False, True]
    assert outcomes[0].result is not None and outcomes[0].result.output == ["https://cdn/1.mp4"]
    assert outcomes[2].result is not None and outcomes[2].result.output == ["https://cdn/1.wav"]
    assert isinstance(outcomes[2].result, VoiceResult)
    assert outcomes[2].request_id == "voice:1"
    assert isinstance(outcomes[3].error, GenerationFailedError)
    assert isinstance(outcomes[4].error, ForeignFetchURLError)
    assert isinstance(outcomes[6].error, ConfigurationError)
    assert (video.call_count, voice.call_count, failed.call_count) == (1, 1, 1)
    assert router.calls.call_count == 3  # nothing for the success, the foreign, the broken


async def test_wait_for_many_names_responses_by_their_id_and_keeps_successes_as_wait_for(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    recorder(router, {"status": "success", "id": 7, "output": ["https://cdn/7.png"]})
    items: list[Any] = [
        {"status": "success", "id": 555, "output": ["https://cdn/555.png"]},  # no fetch_result
        {"status": "failed", "id": 556, "message": "out of memory"},
        {"status": "processing", "id": 7, "fetch_result": f"{BASE_URL}/v6/images/fetch/7"},
        {"status": "success", "id": 7, "output": ["https://cdn/other-7.png"]},  # another job 7
        {"status": "processing", "id": 8},  # not finished, nowhere to ask: still named
        {"status": "processing"},  # no id: by position
    ]
    outcomes = await collect(client.wait_for_many(iter(items), ordered=True))
    assert [o.request_id for o in outcomes] == ["555", "556", "7", "input-3", "8", "input-5"]
    assert [o.ok for o in outcomes] == [True, False, True, True, False, False]
    assert outcomes[0].result is not None
    assert outcomes[0].result.output == ["https://cdn/555.png"]  # as wait_for returns it
    assert outcomes[3].result is not None
    assert outcomes[3].result.output == ["https://cdn/other-7.png"]  # not job 7 of images
    # A failed response says why in its own words (item 12), nothing is sent for it.
    assert isinstance(outcomes[1].error, GenerationFailedError)
    assert "out of memory" in str(outcomes[1].error)
    assert router.calls.call_count == 1  # only job 7 was asked about


async def test_wait_for_many_reads_an_async_input_lazily(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    recorder(router, {"status": "success", "id": 0, "output": []})
    read = []

    async def responses() -> Any:
        for n in range(10):
            read.append(n)
            yield {
                "status": "processing",
                "id": n,
                "fetch_result": f"{BASE_URL}/v6/video/fetch/{n}",
            }

    batch = client.wait_for_many(responses(), concurrency=2)
    async with batch:
        first = await batch.__anext__()
        assert first.ok
        assert len(read) <= 4  # bounded: not the whole input
    assert len(read) < 10


def test_sync_wait_for_and_wait_for_many(sync_client: ModelsLab, router: respx.MockRouter) -> None:
    recorder(router, {"status": "success", "id": 5, "output": ["u"]})
    queued = {"status": "processing", "id": 5, "fetch_result": f"{BASE_URL}/v7/voice/fetch/5"}
    assert isinstance(sync_client.wait_for(queued), VoiceResult)
    with sync_client.wait_for_many([queued, queued]) as batch:
        assert [o.ok for o in batch] == [True, True]


async def test_wait_for_many_stops_at_an_account_error(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    from modelslab_fetch import AuthenticationError

    route = router.post(url__startswith=BASE_URL).respond(
        401, json={"status": "error", "message": "Invalid API key"}
    )
    items = [
        {"status": "processing", "id": n, "fetch_result": f"{BASE_URL}/v6/video/fetch/{n}"}
        for n in range(50)
    ]
    outcomes = await collect(client.wait_for_many(items, concurrency=4))
    assert len(outcomes) == 50
    assert all(isinstance(o.error, AuthenticationError) for o in outcomes)
    assert route.call_count <= 4  # the first refusal stopped the rest


def test_a_misdescribed_endpoint_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        FetchEndpoint("/x/{id}", id_field="request_id")
    with pytest.raises(ConfigurationError, match="give one"):
        FetchEndpoint("/x")
