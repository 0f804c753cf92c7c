"""The everyday settings of a modern SDK, against real servers on 127.0.0.1.

TLS with a CA made in the test (the default refuses it; `verify=` a path, an SSLContext,
or `SSL_CERT_FILE` set after import make it trusted, for API calls and downloads alike),
a client certificate, a forward proxy written here that tunnels `CONNECT`, headers seen
by the server, `MODELSLAB_LOG` in a subprocess, the retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import io
import json
import logging
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import respx
import trustme

from modelslab_fetch import (
    AsyncModelsLab,
    CertificateVerificationError,
    ConfigurationError,
    DownloadError,
    FetchResult,
    ModelsLab,
    RetryPolicy,
    Status,
)
from modelslab_fetch._config import ClientConfig
from modelslab_fetch._http._proxy import Proxies
from modelslab_fetch._logging import install_key_filter as install_log_redaction
from modelslab_fetch.testing import Simulator, SimulatorApp, simulator_server
from tests.conftest import API_KEY, IMAGES_URL, FakeClock
from tests.hostile_servers import Behaviour, HostileServer, Peer, response_head

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
SITE_NAMES = ("modelslab.test", "cdn.test", "127.0.0.1", "localhost")


def site_behaviour(output_host: str) -> Behaviour:
    """An API and a CDN in one: fetches succeed with one output, outputs are PNGs."""

    async def behave(peer: Peer) -> None:
        head = await peer.read_request()
        path = head.split(b" ", 2)[1].decode()
        if path.endswith(".png"):
            body, kind = PNG, "image/png"
        else:
            port = peer.writer.get_extra_info("sockname")[1]
            output = (
                f"https://{output_host}:{port}/a.png"
                if output_host != "cdn.test"
                else "https://cdn.test/a.png"
            )
            body = json.dumps({"status": "success", "id": 7, "output": [output]}).encode()
            kind = "application/json"
        headers = {"Content-Type": kind, "Content-Length": str(len(body)), "Connection": "close"}
        await peer.send(response_head(200, headers) + body)

    return behave


def tls_server_context(ca: trustme.CA, *, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*SITE_NAMES).configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


@pytest.fixture
def site(tls_ca: trustme.CA) -> Iterator[HostileServer]:
    server = HostileServer(site_behaviour("127.0.0.1"), ssl_context=tls_server_context(tls_ca))
    with server:
        yield server


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


async def fetch_and_download(client: AsyncModelsLab, folder: Path) -> list[Path]:
    result = await client.images.fetch(7)
    return await client.download(result, folder)


# TLS ----------------------------------------------------------------------------------


async def test_the_default_trust_refuses_a_ca_it_does_not_know(
    site: HostileServer, tmp_path: Path
) -> None:
    async with AsyncModelsLab(api_key=API_KEY, base_url=site.base_url, max_retries=0) as client:
        with pytest.raises(CertificateVerificationError):
            await client.images.fetch(7)
        result = FetchResult.from_body(
            {"status": "success", "output": [site.url("/a.png")]}, request_id="7"
        )
        with pytest.raises(DownloadError, match=r"(?i)certificate"):
            await client.download(result, tmp_path)


@pytest.mark.parametrize("how", ["path", "str path", "ssl context"])
async def test_verify_trusts_a_ca_for_fetches_and_downloads(
    how: str, site: HostileServer, tls_ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    verify: object = {"path": ca_file, "str path": str(ca_file)}.get(how)
    if how == "ssl context":
        verify = ssl.create_default_context(cafile=str(ca_file))
    async with AsyncModelsLab(api_key=API_KEY, base_url=site.base_url, verify=verify) as client:  # type: ignore[arg-type]
        paths = await fetch_and_download(client, tmp_path)
    assert paths[0].read_bytes() == PNG


async def test_ssl_cert_file_set_after_import_is_honoured(
    site: HostileServer, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # modelslab_fetch is long imported
    async with AsyncModelsLab(api_key=API_KEY, base_url=site.base_url) as client:
        paths = await fetch_and_download(client, tmp_path)
    assert paths[0].read_bytes() == PNG


async def test_trust_env_false_ignores_ssl_cert_file(
    site: HostileServer, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=site.base_url, trust_env=False, max_retries=0
    ) as client:
        with pytest.raises(CertificateVerificationError):
            await client.images.fetch(7)


async def test_a_client_certificate_is_presented(
    tls_ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    client_ca = trustme.CA()
    server = HostileServer(
        site_behaviour("127.0.0.1"), ssl_context=tls_server_context(tls_ca, client_ca=client_ca)
    )
    identity = client_ca.issue_cert("client@example.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    identity.cert_chain_pems[0].write_to_path(str(cert_file))
    identity.private_key_pem.write_to_path(str(key_file))
    with server:
        async with AsyncModelsLab(
            api_key=API_KEY,
            base_url=server.base_url,
            verify=ca_file,
            cert=(str(cert_file), str(key_file)),
        ) as client:
            assert (await client.images.fetch(7)).succeeded
        async with AsyncModelsLab(
            api_key=API_KEY, base_url=server.base_url, verify=ca_file, max_retries=0
        ) as client:
            with pytest.raises(Exception, match=r"(?i)(certificate|alert|reset|closed|connect)"):
                await client.images.fetch(7)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"verify": "/no/such/ca.pem"}, "not a readable CA bundle"),
        ({"verify": 3}, "verify must be"),
        ({"cert": "/no/such/cert.pem"}, "cannot load the client certificate"),
        ({"proxy": "ftp://proxy.example"}, "proxy must be"),
        ({"proxy": "http://user:secret@"}, "proxy must be"),
        ({"default_headers": {"Content-Type": "text/plain"}}, "cannot set"),
        ({"default_headers": {"X-A": "b\r\nX-Injected: 1"}}, "line break"),
        ({"default_headers": ["x"]}, "mapping"),
        ({"trust_env": "no"}, "trust_env"),
        ({"retry_policy": {"max_retries": 3}}, "RetryPolicy"),
    ],
)
def test_unusable_options_are_refused_at_construction(
    options: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        AsyncModelsLab(api_key=API_KEY, **options)  # type: ignore[arg-type]
    assert "secret" not in str(caught.value)


# Proxies ------------------------------------------------------------------------------


class TunnellingProxy:
    """A forward proxy on 127.0.0.1 that tunnels CONNECT to one local TLS server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connects: list[str] = []
        self.server = HostileServer(self._tunnel)

    async def _tunnel(self, peer: Peer) -> None:
        head = await peer.read_request()
        method, target = head.split(b" ", 2)[:2]
        if method != b"CONNECT":
            await peer.send(response_head(405, {"Content-Length": "0", "Connection": "close"}))
            return
        self.connects.append(target.decode())
        reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                while chunk := await source.read(2**16):
                    sink.write(chunk)
                    await sink.drain()
                sink.close()

            await asyncio.gather(
                pipe(peer.reader, writer), pipe(reader, peer.writer), return_exceptions=True
            )
        finally:
            # Also when the harness cancels the tunnel at teardown: no socket left open.
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
def named_site(tls_ca: trustme.CA) -> Iterator[HostileServer]:
    """A TLS site reachable only by name through the proxy (modelslab.test, cdn.test)."""
    server = HostileServer(site_behaviour("cdn.test"), ssl_context=tls_server_context(tls_ca))
    with server:
        yield server


@pytest.fixture
def tunnel(named_site: HostileServer) -> Iterator[TunnellingProxy]:
    proxy = TunnellingProxy(named_site.port)
    with proxy.server:
        yield proxy


async def test_proxy_carries_fetches_and_downloads(
    tunnel: TunnellingProxy, ca_file: Path, tmp_path: Path
) -> None:
    async with AsyncModelsLab(
        api_key=API_KEY, base_url="https://modelslab.test/api", verify=ca_file, proxy=tunnel.url
    ) as client:
        paths = await fetch_and_download(client, tmp_path)
    assert paths[0].read_bytes() == PNG
    assert tunnel.connects == ["modelslab.test:443", "cdn.test:443"]


async def test_environment_proxies_are_honoured_unless_trust_env_is_false(
    tunnel: TunnellingProxy, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", tunnel.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with AsyncModelsLab(
        api_key=API_KEY, base_url="https://modelslab.test/api", verify=ca_file
    ) as client:
        assert (await client.images.fetch(7)).succeeded
    assert tunnel.connects == ["modelslab.test:443"]
    config = ClientConfig.resolve(
        api_key=API_KEY,
        base_url="https://modelslab.test/api",
        timeout=5,
        max_retries=0,
        trust_env=False,
    )
    assert (
        Proxies.of(config.proxy, trust_env=config.trust_env).for_url(httpx.URL(config.base_url))
        is None
    )


async def test_a_plain_http_loopback_base_url_never_goes_through_a_proxy(
    recording_proxy: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", recording_proxy.url())
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue()
        async with AsyncModelsLab(
            api_key=API_KEY, base_url=base_url, proxy=recording_proxy.url()
        ) as client:
            assert (await client.images.fetch(job)).succeeded
    assert recording_proxy.connections == 0


def test_loopback_never_goes_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("all_proxy", "http://all.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    proxies = Proxies.of(None, trust_env=True)
    assert proxies.for_url(httpx.URL("http://127.0.0.1:8000/api/v6/images/fetch")) is None
    assert proxies.for_url(httpx.URL("http://localhost:8000/api/v6/images/fetch")) is None
    assert proxies.for_url(httpx.URL("http://[::1]:8000/api/x")) is None
    assert proxies.for_url(httpx.URL("https://modelslab.com/api/v6/images/fetch")) == (
        "http://all.example:3128"
    )


@pytest.mark.skipif(importlib.util.find_spec("socksio") is not None, reason="socksio installed")
async def test_a_socks_proxy_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    # API calls and downloads make their httpx clients in two places: one message.
    async with AsyncModelsLab(
        api_key=API_KEY, base_url="https://modelslab.test/api", proxy="socks5://127.0.0.1:9"
    ) as client:
        with pytest.raises(ConfigurationError, match=r"pip install 'modelslab-fetch\[socks\]'"):
            await client.images.fetch(1)
        done = FetchResult.from_body(
            {"status": "success", "output": ["https://cdn.test/a.png"]}, request_id="1"
        )
        with pytest.raises(ConfigurationError, match=r"pip install 'modelslab-fetch\[socks\]'"):
            await client.download(done, tmp_path)


# Headers ------------------------------------------------------------------------------


async def test_default_headers_reach_the_api_and_the_cdn(
    site: HostileServer, ca_file: Path, tmp_path: Path
) -> None:
    headers = {"X-Team": "render-farm", "User-Agent": "my-app/2.0"}
    async with AsyncModelsLab(
        api_key=API_KEY, base_url=site.base_url, verify=ca_file, default_headers=headers
    ) as client:
        await fetch_and_download(client, tmp_path)
    api_head, cdn_head = (head.decode().lower() for head in site.requests)
    for head in (api_head, cdn_head):
        assert "x-team: render-farm" in head
        assert "user-agent: my-app/2.0" in head
    assert "content-type: application/json" in api_head


# The retry policy ---------------------------------------------------------------------


async def test_the_retry_policy_decides_statuses_count_and_backoff(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.Response(502)] * 5 + [
        httpx.Response(200, json={"status": "success"})
    ]
    policy = RetryPolicy(
        max_retries=5, statuses=frozenset({502}), backoff_initial=1, backoff_max=4, jitter=0
    )
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, retry_policy=policy) as client:
        assert (await client.images.fetch(1)).succeeded
        assert clock.sleeps == [1, 2, 4, 4, 4]
        route.side_effect = [httpx.Response(503)]
        with pytest.raises(Exception, match="503"):
            await client.images.fetch(2)
    assert route.call_count == 7  # 503 is not in the policy's statuses: one attempt


async def test_the_cap_on_a_stated_wait_is_the_policys(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).respond(
        429, json={"message": "Rate limit exceeded", "retry_after": 30}
    )
    async with AsyncModelsLab(
        api_key=API_KEY, clock=clock, retry_policy=RetryPolicy(max_stated_wait=10)
    ) as client:
        with pytest.raises(Exception, match="30 s"):
            await client.images.fetch(1)
    assert route.call_count == 1


def test_the_default_policy_is_todays_behaviour() -> None:
    policy = RetryPolicy()
    assert policy.max_retries is None
    assert {408, 429, 500, 502, 503, 504, 520, 524} <= policy.statuses
    assert (policy.backoff(1), policy.backoff(2), policy.backoff(5)) == (0.5, 1.0, 8.0)
    assert policy.max_stated_wait == 60


@pytest.mark.parametrize("field", ["backoff_initial", "jitter", "max_stated_wait"])
def test_a_policy_with_negative_numbers_is_refused(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RetryPolicy(**{field: -1})  # type: ignore[arg-type]


# Blocking client and httpx ------------------------------------------------------------


@pytest.mark.parametrize("client_class", [AsyncModelsLab, ModelsLab])
def test_a_blocking_httpx_client_is_refused_at_construction(client_class: type) -> None:
    with httpx.Client() as blocking, pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient"):
        client_class(api_key=API_KEY, http_client=blocking)


# MODELSLAB_LOG ------------------------------------------------------------------------


SCRIPT = """
import sys
from modelslab_fetch import ModelsLab, PollPolicy
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server
key = sys.argv[1]
simulator = Simulator(api_key=key)
app = SimulatorApp(simulator, faults=Faults(error_rate=0.5), seed=1)
fast = PollPolicy(backoff_initial=0.02, backoff_max=0.05, min_interval=0.02)
with simulator_server(app) as base_url:
    with ModelsLab(api_key=key, base_url=base_url, poll_policy=fast) as client:
        for _ in range(4):
            client.images.wait(simulator.queue(ready_in=0.05))
"""


@pytest.mark.parametrize(
    ("level", "expected", "absent"),
    [
        ("debug", ["DEBUG modelslab_fetch", "-> HTTP 200", "INFO modelslab_fetch"], []),
        ("info", ["INFO modelslab_fetch"], ["DEBUG"]),
        ("", [], ["modelslab_fetch"]),
        ("loud", ["MODELSLAB_LOG='loud' is not a level"], ["DEBUG", "INFO"]),
    ],
)
def test_modelslab_log_turns_logging_on_without_code(
    level: str, expected: list[str], absent: list[str]
) -> None:
    env = {**os.environ, "MODELSLAB_LOG": level}
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, API_KEY],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=folder,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    for words in expected:
        assert words in done.stderr
    for words in absent:
        assert words not in done.stderr
    assert API_KEY not in done.stderr


def test_a_log_record_holding_a_lone_surrogate_is_written_by_any_handler() -> None:
    # A strict UTF-8 stream, as a log file opened with encoding="utf-8" is.
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    failed: list[logging.LogRecord] = []

    class Handler(logging.StreamHandler):  # type: ignore[type-arg]
        def handleError(self, record: logging.LogRecord) -> None:
            failed.append(record)

    handler = Handler(stream)
    logger = logging.getLogger("modelslab_fetch")
    install_log_redaction()
    logger.addHandler(handler)
    try:
        # WARNING: a CLI run elsewhere in the session may have raised our logger's level.
        logger.warning("the server said %s", "GPU busy \ud83d")
    finally:
        logger.removeHandler(handler)
    stream.flush()
    assert failed == []
    assert "the server said GPU busy \ufffd" in stream.buffer.getvalue().decode()


# with_options -------------------------------------------------------------------------


async def test_with_options_changes_settings_and_shares_connections_and_limits(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    in_flight, most = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"status": "success", "output": ["https://a/0.png"]})

    router.post(IMAGES_URL).side_effect = slow
    async with AsyncModelsLab(
        api_key=API_KEY, clock=clock, max_concurrency=2, timeout=30
    ) as client:
        quick = client.with_options(timeout=5, max_retries=0, default_headers={"X-Call": "quick"})
        assert (quick.timeout.read, quick.max_retries) == (5, 0)
        assert (client.timeout.read, client.max_retries) == (30, 3)  # unchanged
        assert quick._transport.calls is client._transport.calls
        async with anyio.create_task_group() as tasks:
            for n in range(6):
                tasks.start_soon((client if n % 2 else quick).images.fetch, n)
        assert most <= 2  # one cap for both
        sent = [call.request.headers.get("x-call") for call in router.calls]
        assert sent.count("quick") == 3 and sent.count(None) == 3
    assert quick.closed  # closing one closes both


async def test_with_options_shares_rate_limit_pauses(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [
        httpx.Response(429, json={"message": "Rate limit exceeded", "retry_after": 20}),
        httpx.Response(200, json={"status": "success"}),
        httpx.Response(200, json={"status": "success"}),
    ]
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        with pytest.raises(Exception, match="20 s"):
            await client.with_options(max_retries=0).images.fetch(1)
        await client.images.fetch(2)  # waits out the pause the twin met
    assert clock.elapsed >= 20


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": -1}, "timeout"),
        ({"max_retries": "3"}, "max_retries"),
        ({"poll_policy": 3}, "PollPolicy"),
    ],
)
def test_with_options_checks_its_arguments(options: dict[str, object], words: str) -> None:
    client = AsyncModelsLab(api_key=API_KEY)
    with pytest.raises(ConfigurationError, match=words):
        client.with_options(**options)  # type: ignore[arg-type]


def test_the_blocking_with_options_shares_the_loop_thread() -> None:
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        client = ModelsLab(api_key=API_KEY, base_url=base_url)
        twin = client.with_options(timeout=3)
        job = simulator.queue()
        assert twin.images.fetch(job).succeeded
        assert client.images.fetch(job).succeeded
        assert twin._loop is client._loop
        del client
        gc.collect()  # the twin keeps the original, and so the loop thread, alive
        assert twin.images.fetch(job).succeeded
        twin.close()
        assert twin._loop.closed


# on_update on the clients -------------------------------------------------------------


def test_on_update_reports_every_poll_of_a_blocking_wait() -> None:
    updates: list[tuple[object, ...]] = []
    simulator = Simulator(api_key=API_KEY, eta_error=0.0)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue(ready_in=0.6)
        with ModelsLab(api_key=API_KEY, base_url=base_url) as client:
            result = client.images.wait(
                job, on_update=lambda u: updates.append((u.polls, u.status, u.next_poll_in))
            )
    assert result.succeeded
    assert updates[0][:2] == (1, Status.PROCESSING) and updates[0][2] is not None
    assert updates[-1] == (len(updates), Status.SUCCESS, None)


async def test_on_update_reaches_wait_many_and_wait_for(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(f"{IMAGES_URL}/44")
    route.respond(200, json={"status": "success", "id": 44, "output": ["https://a/0.png"]})
    router.post(IMAGES_URL).respond(200, json={"status": "success", "output": ["https://a/0.png"]})
    seen: list[str] = []
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        async for _ in client.images.wait_many(
            ["1", "2"], on_update=lambda u: seen.append(u.request_id)
        ):
            pass
        queued = {"status": "processing", "id": 44, "eta": 3, "fetch_result": f"{IMAGES_URL}/44"}
        await client.wait_for(
            queued, on_update=lambda u: seen.append(f"for:{u.request_id}:{u.polls}")
        )
    assert sorted(seen[:2]) == ["1", "2"]
    assert seen[2:] == ["for:44:1", "for:44:2"]


# One httpx.AsyncClient, several blocking clients --------------------------------------


def test_several_blocking_clients_can_share_one_httpx_async_client() -> None:
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        http_client = httpx.AsyncClient()
        first = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        second = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        job = simulator.queue()
        assert first.images.fetch(job).succeeded
        assert second.images.fetch(job).succeeded
        first.close()
        assert second.images.fetch(job).succeeded  # still running for the other client
        second.close()
        third = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        assert third.images.fetch(job).succeeded
        third.close()


def test_modelslab_log_info_means_info_in_the_command_too(tmp_path: Path) -> None:
    # The command's live view turns the logger down to DEBUG to count polls.
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue(ready_in=0.3)
        env = {
            **os.environ,
            "MODELSLAB_LOG": "info",
            "MODELSLAB_API_KEY": API_KEY,
            "MODELSLAB_BASE_URL": base_url,
        }
        done = subprocess.run(
            [sys.executable, "-m", "modelslab_fetch", "wait", job],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "DEBUG" not in done.stderr
    assert API_KEY not in done.stderr
