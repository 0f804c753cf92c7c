"""Webhooks: configuration, the capability URL, the checks of `receive`, the deliveries hub.

What is about waits is in test_webhook_waits.py; the receiver over real sockets (uvicorn,
a WSGI server, forged floods, memory, rates) in test_webhook_receiver.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import pickle
import threading
from typing import Any

import pytest
from pydantic import SecretStr

import modelslab_fetch
from modelslab_fetch import (
    MAX_DELIVERY_BYTES,
    MAX_KEPT_AGE,
    MAX_KEPT_DELIVERIES,
    AsyncModelsLab,
    ConfigurationError,
    InvalidWebhookError,
    ModelsLab,
    ModelsLabError,
    Status,
    WebhookDelivery,
)
from modelslab_fetch._jobs._deliveries import DeliveryHub
from tests.conftest import API_KEY

SECRET = "test-webhook-secret-0123456789-abcdefghij"
HOOK = "https://hooks.example.com/modelslab"


def webhook_client(**options: Any) -> AsyncModelsLab:
    options.setdefault("webhook_url", HOOK)
    options.setdefault("webhook_secret", SECRET)
    return AsyncModelsLab(api_key=API_KEY, **options)


def path_of(url: str) -> str:
    return url.removeprefix("https://hooks.example.com")


def payload(track_id: str, request_id: object = 123, status: str = "success", **more: Any) -> bytes:
    body = {"status": status, "id": request_id, "track_id": track_id, "output": ["https://x/0.png"]}
    body.update(more)
    return json.dumps(body).encode()


def refused(client: AsyncModelsLab, path: str, body: bytes, **kw: Any) -> InvalidWebhookError:
    with pytest.raises(InvalidWebhookError) as caught:
        client.webhooks.receive(path, body, **kw)
    return caught.value


# ------------------------------------------------------------------ configuration


def test_webhooks_are_off_unless_configured() -> None:
    client = AsyncModelsLab(api_key=API_KEY)
    assert not client.webhooks.configured
    with pytest.raises(ConfigurationError) as caught:
        client.webhooks.fields()
    for needed in ("webhook_url=", "webhook_secret=", "MODELSLAB_WEBHOOK_URL"):
        assert needed in str(caught.value)
    with pytest.raises(ConfigurationError):
        client.webhooks.receive("/a/b", b"{}")


def test_the_url_and_secret_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_WEBHOOK_URL", HOOK)
    monkeypatch.setenv("MODELSLAB_WEBHOOK_SECRET", SECRET)
    client = AsyncModelsLab(api_key=API_KEY)
    assert client.webhooks.fields("t1")["webhook"].startswith(HOOK + "/t1/")
    other = AsyncModelsLab(api_key=API_KEY, webhook_url="https://other.example/h")
    assert other.webhooks.fields("t1")["webhook"].startswith("https://other.example/h/t1/")


@pytest.mark.parametrize(
    ("options", "must_say"),
    [
        ({"webhook_url": HOOK, "webhook_secret": None}, "MODELSLAB_WEBHOOK_SECRET"),
        ({"webhook_url": None, "webhook_secret": SECRET}, "MODELSLAB_WEBHOOK_URL"),
        ({"webhook_url": None, "webhook_secret": None, "trust_webhooks": True}, "webhook_url="),
    ],
)
@pytest.mark.parametrize("client_class", [AsyncModelsLab, ModelsLab])
def test_one_without_the_other_says_what_to_set(
    options: dict[str, Any], must_say: str, client_class: type
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        client_class(api_key=API_KEY, **options)
    assert must_say in str(caught.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/h", "https"),
        ("https://hooks.example.com/h?x=1", "query"),
        ("https://user:pw@hooks.example.com/h", "password"),
        ("ftp://hooks.example.com/h", "usable"),
        ("https://hooks example.com/h", "spaces"),
        ("https://bad_host-.example/h", "usable"),
    ],
)
def test_an_unusable_webhook_url_is_refused_without_being_repeated(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        webhook_client(webhook_url=url)
    message = str(caught.value)
    assert "hooks.example" not in message and "hooks example" not in message
    assert "bad_host" not in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/h", "http://localhost/h", "http://[::1]/h"])
def test_plain_http_is_allowed_to_loopback_only(url: str) -> None:
    assert webhook_client(webhook_url=url).webhooks.configured


@pytest.mark.parametrize("secret", ["short", " " * 40, "x" * 31])
def test_a_short_secret_is_refused_and_the_message_says_how_to_make_one(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="token_urlsafe") as caught:
        webhook_client(webhook_secret=secret)
    assert secret.strip() == "" or secret not in str(caught.value)


def test_a_pydantic_secret_str_is_accepted() -> None:
    client = webhook_client(webhook_secret=SecretStr(SECRET))
    same = webhook_client()
    assert client.webhooks.fields("t")["webhook"] == same.webhooks.fields("t")["webhook"]


def test_trust_webhooks_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="trust_webhooks"):
        webhook_client(trust_webhooks="yes")


def test_neither_the_url_nor_the_secret_shows_in_reprs_or_pickles() -> None:
    client = webhook_client()
    token = client.webhooks.fields("t")["webhook"].rsplit("/", 1)[1]
    settings = client._config.webhooks
    texts = [repr(client), repr(client._config), repr(settings), repr(client.webhooks)]
    texts += [str(settings), repr(client.webhooks.asgi_app()), repr(client.webhooks.wsgi_app())]
    for text in texts:
        assert SECRET not in text
        assert "hooks.example.com" not in text
        assert token not in text
    with pytest.raises(TypeError):
        pickle.dumps(settings)
    blocking = ModelsLab(api_key=API_KEY, webhook_url=HOOK, webhook_secret=SECRET)
    assert "hooks.example.com" not in repr(blocking.webhooks) + repr(blocking)
    blocking.close()


def test_the_blocking_client_offers_the_same_webhooks() -> None:
    with ModelsLab(api_key=API_KEY, webhook_url=HOOK, webhook_secret=SECRET) as blocking:
        twin = webhook_client()
        assert blocking.webhooks.fields("t") == twin.webhooks.fields("t")
        async_names = {n for n in dir(twin.webhooks) if not n.startswith("_")} - {"close"}
        assert async_names <= set(dir(blocking.webhooks))


def test_with_options_twins_share_the_webhooks() -> None:
    client = webhook_client()
    twin = client.with_options(timeout=5)
    assert twin.webhooks is client.webhooks


# ------------------------------------------------------------------ the capability URL


def test_fields_name_a_url_below_the_webhook_url_with_a_token_of_the_track_id() -> None:
    fields = webhook_client().webhooks.fields("order-17")
    assert fields["track_id"] == "order-17"
    prefix, track_id, token = fields["webhook"].rsplit("/", 2)
    assert (prefix, track_id) == (HOOK, "order-17")
    expected = hmac.new(
        SECRET.encode(), b"modelslab-fetch webhook v1\norder-17", hashlib.sha256
    ).digest()[:16]
    assert base64.urlsafe_b64decode(token + "==") == expected
    assert len(token) == 22  # 128 bits


def test_a_track_id_is_made_when_none_is_given_and_never_twice() -> None:
    webhooks = webhook_client().webhooks
    made = {webhooks.fields()["track_id"] for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(track_id) == 22 for track_id in made)


def test_each_track_id_and_each_secret_has_its_own_token() -> None:
    a = webhook_client().webhooks
    b = webhook_client(webhook_secret=SECRET[::-1]).webhooks
    assert a.fields("x")["webhook"] != a.fields("y")["webhook"].replace("/y/", "/x/")
    assert a.fields("x")["webhook"] != b.fields("x")["webhook"]


@pytest.mark.parametrize("track_id", ["", "has space", "a/b", "é", "x" * 65, "a?b", 17])
def test_a_track_id_that_cannot_go_in_a_url_path_is_refused(track_id: Any) -> None:
    with pytest.raises(ConfigurationError, match="track_id"):
        webhook_client().webhooks.fields(track_id)


# ------------------------------------------------------------------ receive


def test_a_valid_delivery_is_returned_typed_and_redacted() -> None:
    client = webhook_client()
    fields = client.webhooks.fields("t-1")
    body = payload(
        "t-1", 123, generationTime=1.5, meta={"webhook": fields["webhook"], "key": API_KEY}
    )
    delivery = client.webhooks.receive(path_of(fields["webhook"]), body, {})
    assert isinstance(delivery, WebhookDelivery)
    assert (delivery.request_id, delivery.id, delivery.track_id) == ("123", "123", "t-1")
    assert delivery.status is Status.SUCCESS
    assert delivery.finished and not delivery.duplicate
    assert delivery.result.output == ["https://x/0.png"]
    assert delivery.received_at.tzinfo is not None
    shown = json.dumps(delivery.result.raw) + repr(delivery) + delivery.result.model_dump_json()
    assert fields["webhook"].rsplit("/", 1)[1] not in shown
    assert "hooks.example.com" not in shown
    assert API_KEY not in shown


@pytest.mark.parametrize(
    "path",
    [
        "/modelslab/{t}/{k}",
        "/{t}/{k}",
        "/some/mount/prefix/{t}/{k}",
        "https://hooks.example.com/modelslab/{t}/{k}",
        "/modelslab/{t}/{k}?utm=1",
    ],
)
def test_the_path_is_read_as_frameworks_give_it(path: str) -> None:
    client = webhook_client()
    token = client.webhooks.fields("t")["webhook"].rsplit("/", 1)[1]
    delivery = client.webhooks.receive(path.format(t="t", k=token), payload("t"))
    assert delivery.track_id == "t"


def test_forged_urls_are_refused_as_not_found_and_the_message_says_nothing_more() -> None:
    client = webhook_client()
    fields = client.webhooks.fields("t")
    good = path_of(fields["webhook"])
    token = good.rsplit("/", 1)[1]
    stranger = webhook_client(webhook_secret=SECRET[::-1]).webhooks.fields("t")["webhook"]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged_paths = [
        path_of(stranger),  # a token made with another secret
        good.rsplit("/", 1)[0] + "/" + flipped,  # one character changed
        good.rsplit("/", 1)[0],  # no token
        good + "/extra",
        "/modelslab/t/" + "A" * 22,
        "/",
        "",
        "/modelslab/t/" + token + "x" * 5000,
    ]
    messages = set()
    for path in forged_paths:
        error = refused(client, path, payload("t"))
        assert error.status_code == 404
        messages.add(str(error))
    # Right token, another track_id in the body: refused exactly as a forged URL is.
    error = refused(client, good, payload("other-track"))
    assert error.status_code == 404
    messages.add(str(error))
    error = refused(client, good, json.dumps({"status": "success", "id": 1}).encode())
    messages.add(str(error))
    assert len(messages) == 1
    (message,) = messages
    assert token not in message and "other-track" not in message
    assert "hooks.example" not in message and "track" not in message
    assert isinstance(error, ModelsLabError)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelslab_fetch._webhook_config as config_module

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert config_module.hmac is hmac  # type: ignore[attr-defined]
    client = webhook_client()
    fields = client.webhooks.fields("t")
    client.webhooks.receive(path_of(fields["webhook"]), payload("t"))
    assert compared and compared[-1][1] == fields["webhook"].rsplit("/", 1)[1].encode()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"x" * (MAX_DELIVERY_BYTES + 1), 413),
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b"\xff\xfe garbage", 400),
        (b"[" * 100 + b"]" * 100, 400),
        (b'{"track_id": "t", "id": 1, "nested": ' + b"[" * 70 + b"]" * 70 + b"}", 400),
        (b'{"track_id": "t", "id": 1}', 400),  # no status: not a fetch record
    ],
)
def test_bodies_that_are_no_delivery_are_refused(body: bytes, status: int) -> None:
    client = webhook_client()
    error = refused(client, path_of(client.webhooks.fields("t")["webhook"]), body)
    assert error.status_code == status
    assert client.webhooks._hub().kept == 0


def test_an_encoded_body_is_refused() -> None:
    client = webhook_client()
    path = path_of(client.webhooks.fields("t")["webhook"])
    error = refused(client, path, payload("t"), headers={"Content-Encoding": "gzip"})
    assert error.status_code == 415
    assert client.webhooks.receive(path, payload("t"), {"content-encoding": "identity"})


def test_a_track_id_echoed_as_a_number_matches() -> None:
    client = webhook_client()
    path = path_of(client.webhooks.fields("42")["webhook"])
    body = json.dumps({"status": "success", "id": 9, "track_id": 42}).encode()
    assert client.webhooks.receive(path, body).track_id == "42"


def test_a_duplicate_is_returned_marked_and_handed_on_once() -> None:
    client = webhook_client()
    seen: list[WebhookDelivery] = []
    client.webhooks.on_delivery(seen.append)
    path = path_of(client.webhooks.fields("t")["webhook"])
    first = client.webhooks.receive(path, payload("t", 5))
    again = client.webhooks.receive(path, payload("t", 5))
    other_status = client.webhooks.receive(path, payload("t", 5, status="failed"))
    assert (first.duplicate, again.duplicate, other_status.duplicate) == (False, True, False)
    assert [d.status for d in seen] == [Status.SUCCESS, Status.FAILED]


def test_a_delivery_without_an_id_is_kept_by_its_track_id() -> None:
    client = webhook_client()
    path = path_of(client.webhooks.fields("t")["webhook"])
    body = json.dumps({"status": "failed", "id": "", "message": "boom", "track_id": "t"}).encode()
    delivery = client.webhooks.receive(path, body)
    assert delivery.request_id == "" and delivery.status is Status.FAILED
    assert client.webhooks.receive(path, body).duplicate


def test_a_callback_that_raises_is_logged_and_the_delivery_still_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = webhook_client()

    def broken(_delivery: WebhookDelivery) -> None:
        raise RuntimeError("app bug")

    stop = client.webhooks.on_delivery(broken)
    path = path_of(client.webhooks.fields("t")["webhook"])
    with caplog.at_level(logging.ERROR, logger="modelslab_fetch"):
        assert client.webhooks.receive(path, payload("t", 1))
    assert "on_delivery callback raised" in caplog.text
    stop()
    caplog.clear()
    client.webhooks.receive(path, payload("t", 2))
    assert caplog.text == ""


# ------------------------------------------------------------------ the hub's bounds


def delivery(request_id: str, status: Status = Status.SUCCESS, size: int = 100) -> WebhookDelivery:
    from datetime import datetime, timezone

    result = modelslab_fetch.FetchResult.from_body(
        {"status": status.value, "id": request_id}, request_id=request_id
    )
    return WebhookDelivery(
        track_id="t",
        request_id=request_id,
        status=status,
        result=result,
        received_at=datetime.now(timezone.utc),
        size=size,
    )


def test_the_documented_bounds() -> None:
    assert MAX_KEPT_DELIVERIES == 10_000
    assert MAX_KEPT_AGE == 900.0
    assert MAX_DELIVERY_BYTES == 64 * 1024


def test_the_hub_keeps_at_most_its_count_oldest_out() -> None:
    hub = DeliveryHub(max_kept=3)
    for n in range(5):
        assert hub.offer(delivery(str(n)))
    assert hub.kept == 3
    assert hub.offer(delivery("0"))  # forgotten: no longer known as a duplicate
    assert not hub.offer(delivery("4"))


def test_the_hub_forgets_deliveries_older_than_its_age() -> None:
    now = [0.0]
    hub = DeliveryHub(max_age=900.0, monotonic=lambda: now[0])
    hub.offer(delivery("1"))
    now[0] = 899.0
    assert not hub.offer(delivery("1"))
    now[0] = 901.0
    hub.offer(delivery("2"))
    assert hub.kept == 1
    assert hub.offer(delivery("1"))


def test_the_hub_keeps_at_most_its_bytes() -> None:
    hub = DeliveryHub(max_bytes=1000)
    for n in range(10):
        hub.offer(delivery(str(n), size=300))
    assert hub.kept == 3
    assert hub._bytes == 900


def test_the_default_hub_holds_ten_thousand_ids() -> None:
    hub = DeliveryHub()
    for n in range(MAX_KEPT_DELIVERIES + 500):
        hub.offer(delivery(str(n), size=1))
    assert hub.kept == MAX_KEPT_DELIVERIES


def test_offers_from_many_threads_keep_each_delivery_once() -> None:
    hub = DeliveryHub()
    accepted: list[bool] = []
    lock = threading.Lock()

    def offer_all() -> None:
        for n in range(2000):
            fresh = hub.offer(delivery(str(n)))
            with lock:
                accepted.append(fresh)

    threads = [threading.Thread(target=offer_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted.count(True) == 2000
    assert hub.kept == 2000


def test_a_framework_that_gives_text_is_read_as_its_bytes() -> None:
    client = webhook_client()
    path = path_of(client.webhooks.fields("t")["webhook"])
    assert client.webhooks.receive(path, payload("t").decode()).request_id == "123"
    with pytest.raises(TypeError):
        client.webhooks.receive(path, 17)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"webhook_url": 17}, "webhook_url must be a str"), ({"webhook_secret": 17}, "SecretStr")],
)
def test_options_of_the_wrong_type_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        webhook_client(**options)


def test_an_iterator_not_read_keeps_the_newest_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = DeliveryHub()
    iterator = hub.iterator()
    with caplog.at_level(logging.WARNING, logger="modelslab_fetch"):
        for n in range(MAX_KEPT_DELIVERIES + 2):
            hub.offer(delivery(str(n), size=1))
    assert iterator.dropped == 2
    assert caplog.text.count("not being read") == 1
    assert next(iterator).request_id == "2"  # the two oldest went
    assert "unread=9999" in repr(iterator)
    with iterator:
        pass
    assert list(iterator) == []


def test_a_watch_outside_any_event_loop_is_woken_in_place() -> None:
    hub = DeliveryHub()
    watch: Any
    with hub.watch("9") as watch:
        assert hub.waiting == 1 and "pending=False" in repr(watch)
        thread = threading.Thread(target=hub.offer, args=(delivery("9"),))
        thread.start()
        thread.join()
        assert watch.pending
        watch.confirming()
        assert not watch.pending and not watch.expecting
    assert hub.waiting == 0
    assert repr(hub) == "DeliveryHub(kept=1, waiting=0)"


def test_a_trusted_delivery_this_endpoint_cannot_read_is_confirmed_by_a_fetch() -> None:
    hub = DeliveryHub(trust=True)

    def unreadable(_result: modelslab_fetch.FetchResult) -> modelslab_fetch.FetchResult:
        raise ValueError("not a voice result")

    watch: Any
    with hub.watch("3", parse=unreadable) as watch:
        hub.offer(delivery("3"))
        assert watch.trusted() is None  # the wait then fetches, as in confirming mode
        assert not watch.pending


async def test_the_asgi_app_closes_websockets_and_refuses_a_sender_that_hangs_up() -> None:
    app = webhook_client().webhooks.asgi_app()
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    await app({"type": "websocket"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent.clear()
    client = webhook_client()
    path = path_of(client.webhooks.fields("t")["webhook"])
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await client.webhooks.asgi_app()(scope, receive, send)
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(
    ("environ", "status"),
    [
        ({}, "411"),  # no length, no end marker: reading could block
        ({"wsgi.input_terminated": True}, "200"),
        ({"CONTENT_LENGTH": "70000"}, "413"),
    ],
)
def test_the_wsgi_app_reads_a_body_only_when_its_end_is_known(
    environ: dict[str, Any], status: str
) -> None:
    import io

    client = webhook_client()
    answered: list[str] = []
    body = payload("t")
    request = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/hooks",
        "PATH_INFO": path_of(client.webhooks.fields("t")["webhook"]).removeprefix("/hooks"),
        "wsgi.input": io.BytesIO(body),
        **environ,
    }
    client.webhooks.wsgi_app()(request, lambda status, _headers: answered.append(status))
    assert answered[0].startswith(status)
