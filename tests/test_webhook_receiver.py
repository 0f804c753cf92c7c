"""The webhook receiver over real sockets: the ASGI app under uvicorn, the WSGI app.

The receiver runs in this process, on a uvicorn (or wsgiref) thread of its own, as an
app would serve it; deliveries come from another process (tests/webhook_flood.py) over
keep-alive sockets on 127.0.0.1, so the figures are the receiver's alone. Forged
deliveries must be refused, wake nothing and leave memory flat; valid ones must be
answered 200 at 2,000 a second, each reaching the client once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import anyio
import httpx
import pytest
import respx
import uvicorn

from modelslab_fetch import AsyncModelsLab, WebhookDelivery
from tests.conftest import API_KEY, BASE_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SECRET = "receiver-tests-secret-0123456789-abcdefgh"


@contextmanager
def served_asgi(app: Any, *, traced: bool = True) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread; yield the port.

    `traced=False` keeps the server thread out of coverage's tracer, which slows every
    Python line it runs several times over: for measuring rates, not behaviour.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="critical", access_log=False, lifespan="on", http="h11", backlog=4096
    )
    server = uvicorn.Server(config)

    def run() -> None:
        if not traced:
            sys.settrace(None)
        server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# Where an app would mount the receiver; the receiver reads only the path's last two
# segments (track id, token), so the port it is served on here need not be this one.
HOOK = "http://127.0.0.1:8080/hooks/modelslab"


def hook_url(_port: int) -> str:
    return HOOK


def receiver_client(port: int, **options: Any) -> AsyncModelsLab:
    return AsyncModelsLab(
        api_key=API_KEY,
        base_url=BASE_URL,
        webhook_url=hook_url(port),
        webhook_secret=SECRET,
        **options,
    )


def flood(
    port: int, kind: str, count: int, *, rate: float | None = None, first_id: int = 1
) -> dict[str, Any]:
    """Send `count` deliveries of `kind` from another process; its report."""
    # Untraced: coverage's subprocess hook would slow the sender, not measure the receiver.
    untraced = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    env = {
        **untraced,
        "MODELSLAB_WEBHOOK_URL": hook_url(port),
        "MODELSLAB_WEBHOOK_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-m", "tests.webhook_flood", str(port), kind, str(count)]
    if rate is not None:
        args += ["--rate", str(rate)]
    args += ["--first-id", str(first_id)]
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=120, check=True, cwd=ROOT
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def rss_mb() -> float:
    """This process's resident memory, from /proc (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Counting:
    """Counts what reaches the client: every delivery the hub hands on."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, delivery: WebhookDelivery) -> None:
        with self.lock:
            self.ids.append(delivery.request_id)


# ------------------------------------------------------------------ the ASGI app


def test_the_asgi_app_answers_each_kind_of_request_as_documented() -> None:
    client = receiver_client(0)  # the URL's port is not the receiver's concern
    with served_asgi(client.webhooks.asgi_app()) as port:
        base = f"http://127.0.0.1:{port}"
        good = client.webhooks.fields("trk")["webhook"].removeprefix("http://127.0.0.1:8080")
        body = {"status": "success", "id": 7, "track_id": "trk", "output": ["https://x/7.png"]}
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.post(good, json=body).status_code == 200
            assert http.post(good, json=body).status_code == 200  # a duplicate: still 2xx
            assert http.get(good).status_code == 405
            assert http.get(good).headers["allow"] == "POST"
            assert http.post(good[:-3] + "abc", json=body).status_code == 404
            assert http.post(good, json={**body, "track_id": "other"}).status_code == 404
            assert http.post(good, content=b"{nope").status_code == 400
            assert http.post(good, content=b"x" * 70_000).status_code == 413
            gzip = {"content-encoding": "gzip"}
            assert http.post(good, json=body, headers=gzip).status_code == 415
    assert client.webhooks._hub().kept == 1


@pytest.mark.parametrize(("path_kind", "expected"), [("forged", b"404"), ("good", b"413")])
def test_a_forged_url_or_an_announced_excess_is_refused_before_the_body_is_sent(
    path_kind: str, expected: bytes
) -> None:
    # The headers announce 10 MB and no body follows: an answer that comes at all was
    # given without reading the body (the receiver would otherwise wait for it).
    client = receiver_client(0)
    good = client.webhooks.fields("trk")["webhook"].removeprefix("http://127.0.0.1:8080")
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    path = good if path_kind == "good" else forged
    with (
        served_asgi(client.webhooks.asgi_app()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
        sock.sendall(head.encode())
        answer = sock.recv(1024)
    assert answer.split(b" ")[1] == expected


@pytest.mark.soak  # nox -s soak (and CI): too slow for the default run
async def test_forged_deliveries_are_refused_wake_nothing_and_leave_memory_flat() -> None:
    """10,000+ forged deliveries of four kinds: refused, none reaches a wait, flat memory."""
    counting = Counting()
    served: dict[str, int] = {"fetches": 0}

    def job_still_running(request: httpx.Request) -> httpx.Response:
        served["fetches"] += 1
        rid = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"status": "processing", "id": rid, "eta": 300})

    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith=BASE_URL).mock(side_effect=job_still_running)
        async with receiver_client(0) as client:
            client.webhooks.on_delivery(counting)
            with served_asgi(client.webhooks.asgi_app()) as port:
                waited: list[Any] = []

                async def waiter() -> None:
                    waited.append(await client.images.wait(5, timeout=600))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    # Warm up (imports, buffers, uvicorn's first connections), then measure.
                    await anyio.to_thread.run_sync(flood, port, "wrong-token", 1000)
                    before = rss_mb()
                    reports = {}
                    for kind, count in [
                        ("wrong-token", 4000),
                        ("other-track", 3000),
                        ("oversized", 1500),
                        ("not-json", 1500),
                        ("no-length", 500),
                    ]:
                        reports[kind] = await anyio.to_thread.run_sync(flood, port, kind, count)
                    grown = rss_mb() - before
                    assert not waited, "no forged delivery may end a wait"
                    assert served["fetches"] == 1, "nor make it fetch"
                    tg.cancel_scope.cancel()
    expected = {
        "wrong-token": "404",
        "other-track": "404",
        "oversized": "413",
        "not-json": "400",
        "no-length": "413",
    }
    for kind, report in reports.items():
        assert set(report["statuses"]) == {expected[kind]}, (kind, report)
    assert counting.ids == []
    assert client.webhooks._hub().kept == 0
    print(f"\nRSS grew {grown:.1f} MB over 10,500 forged deliveries")
    assert grown < 10, f"memory grew {grown:.1f} MB"


@pytest.mark.soak  # nox -s soak (and CI): too slow for the default run
def test_two_thousand_deliveries_a_second_are_answered_each_once() -> None:
    counting = Counting()
    client = receiver_client(0)
    client.webhooks.on_delivery(counting)
    count = 6000
    with served_asgi(client.webhooks.asgi_app(), traced=False) as port:
        flood(port, "valid", 500, first_id=1_000_000)  # warm-up, other ids
        paced = flood(port, "valid", count, rate=2000.0)
        flat_out = flood(port, "valid", count, first_id=count + 1)
    for report in (paced, flat_out):
        assert report["statuses"] == {"200": count}, report
        assert report["ok_ids"] == count
    rate = count / paced["elapsed"]
    top = count / flat_out["elapsed"]
    print(f"\npaced at 2,000/s: {rate:.0f}/s answered; as fast as possible: {top:.0f}/s")
    received = [rid for rid in counting.ids if int(rid) < 1_000_000]
    assert sorted(map(int, received)) == list(range(1, 2 * count + 1)), "each once"
    assert rate >= 1900, f"only {rate:.0f} deliveries a second"
    assert top >= 2000, f"at most {top:.0f} deliveries a second"


async def test_a_valid_delivery_over_the_socket_ends_a_wait_on_another_loop() -> None:
    fetches = {"n": 0, "ready": False}

    def job(request: httpx.Request) -> httpx.Response:
        fetches["n"] += 1
        rid = request.url.path.rsplit("/", 1)[1]
        if fetches["ready"]:
            return httpx.Response(200, json={"status": "success", "id": rid, "output": ["u"]})
        return httpx.Response(200, json={"status": "processing", "id": rid, "eta": 60})

    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith=BASE_URL).mock(side_effect=job)
        async with receiver_client(0) as client:
            with served_asgi(client.webhooks.asgi_app()) as port:

                def ready_and_posted() -> None:
                    time.sleep(0.3)
                    fetches["ready"] = True
                    flood(port, "valid", 1, first_id=77)

                thread = threading.Thread(target=ready_and_posted)
                started = time.monotonic()
                thread.start()
                with anyio.fail_after(10):
                    result = await client.images.wait(77)
                thread.join()
    assert result.succeeded
    assert time.monotonic() - started < 5
    assert fetches["n"] == 2


# ------------------------------------------------------------------ the WSGI app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_wsgi_app_receives_and_refuses_as_the_asgi_app_does() -> None:
    client = receiver_client(0)
    counting = Counting()
    client.webhooks.on_delivery(counting)
    server = make_server("127.0.0.1", 0, client.webhooks.wsgi_app(), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        good = client.webhooks.fields("trk")["webhook"].removeprefix("http://127.0.0.1:8080")
        body = {"status": "failed", "id": 8, "track_id": "trk", "message": "boom"}
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.post(good, json=body).status_code == 200
            assert http.get(good).status_code == 405
            assert http.post(good[:-3] + "abc", json=body).status_code == 404
            assert http.post(good, json={**body, "track_id": "x"}).status_code == 404
            assert http.post(good, content=b"nope").status_code == 400
            assert http.post(good, content=b"x" * 70_000).status_code == 413
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
    assert counting.ids == ["8"]
