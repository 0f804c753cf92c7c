"""Proxies: honoured for https (a CONNECT tunnel), never for loopback, refused for plain http.

A forward proxy written here tunnels `CONNECT` to a TLS site on 127.0.0.1; a recording proxy
proves that what must go direct does (it sees no connection); a plain-http proxy, which would
read the key in the body, is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from modelslab_fetch import (
    AsyncModelsLab,
    ConfigurationError,
    FetchResult,
)
from modelslab_fetch._config import ClientConfig
from modelslab_fetch._http._backends._aiohttp import AiohttpBackend
from modelslab_fetch._http._proxy import Proxies
from modelslab_fetch.testing import Simulator, SimulatorApp, simulator_server
from tests.backends import post
from tests.conftest import API_KEY, FakeClock
from tests.loopback import (
    LoopbackServer,
    Peer,
    answer,
    response_head,
    tls_server_context,
)
from tests.test_secrets import KEY, EchoServer
from tests.test_tls import PNG, SITE_NAMES, fetch_and_download, site_behaviour

pytestmark = pytest.mark.integration


Hostile = Callable[..., LoopbackServer]


class TunnellingProxy:
    """A forward proxy on 127.0.0.1 that tunnels CONNECT to one local TLS server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connects: list[str] = []
        self.server = LoopbackServer(self._tunnel)

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
def named_site(tls_ca: trustme.CA) -> Iterator[LoopbackServer]:
    """A TLS site reachable only by name through the proxy (modelslab.test, cdn.test)."""
    server = LoopbackServer(
        site_behaviour("cdn.test"), ssl_context=tls_server_context(tls_ca, *SITE_NAMES)
    )
    with server:
        yield server


@pytest.fixture
def tunnel(named_site: LoopbackServer) -> Iterator[TunnellingProxy]:
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
    recording_proxy: LoopbackServer, monkeypatch: pytest.MonkeyPatch
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


def test_the_proxy_table_never_routes_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
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


async def test_the_aiohttp_backend_never_proxies_loopback(
    hostile: Hostile, recording_proxy: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", recording_proxy.url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = hostile(answer())
    backend = AiohttpBackend(max_connections=1)
    try:
        await post(backend, server)
    finally:
        await backend.aclose()
    assert recording_proxy.connections == 0
    assert len(server.requests) == 1


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """The echoing server of tests/test_secrets.py: whatever reached it would be answered."""
    with EchoServer() as server:
        assert isinstance(server, EchoServer)
        yield server


@pytest.fixture
def proxy(recording_proxy: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    """The recording proxy, named by every proxy variable of the environment."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, recording_proxy.url().rstrip("/"))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return recording_proxy


async def test_a_plain_http_proxy_is_refused_before_the_key_is_sent(
    proxy: LoopbackServer, echo_server: EchoServer
) -> None:
    base_url = echo_server.base_url
    async with httpx.AsyncClient() as http_client:
        with pytest.raises(ConfigurationError) as caught:
            AsyncModelsLab(api_key=KEY, base_url=base_url, http_client=http_client)
    message = str(caught.value)
    assert "unencrypted" in message and "trust_env=False" in message and "NO_PROXY" in message
    assert proxy.connections == 0 and echo_server.bodies == []


@pytest.mark.parametrize(
    "make_client",
    [
        lambda proxy_url: httpx.AsyncClient(proxy=proxy_url, trust_env=False),
        lambda proxy_url: httpx.AsyncClient(
            mounts={"http://": httpx.AsyncHTTPTransport(proxy=proxy_url)}, trust_env=False
        ),
    ],
    ids=["proxy=", "mounts="],
)
async def test_an_explicit_proxy_over_plain_http_is_refused(
    make_client: Callable[[str], httpx.AsyncClient],
) -> None:
    async with make_client("http://127.0.0.1:9") as http_client:
        with pytest.raises(ConfigurationError):
            AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=http_client)
        # Over https the proxy sees only a CONNECT tunnel: allowed.
        AsyncModelsLab(api_key=KEY, base_url="https://modelslab.com/api", http_client=http_client)


async def test_without_the_environment_proxy_requests_go_direct(
    proxy: LoopbackServer, echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "reason-200"
    base_url = echo_server.base_url
    async with (
        httpx.AsyncClient(trust_env=False) as http_client,
        AsyncModelsLab(api_key=KEY, base_url=base_url, http_client=http_client) as client,
    ):
        assert (await client.images.fetch("1")).succeeded
    assert len(echo_server.bodies) == 1 and proxy.connections == 0


async def test_the_default_backend_never_proxies_loopback(
    proxy: LoopbackServer, echo_server: EchoServer, clock: FakeClock
) -> None:
    echo_server.echo = "reason-200"
    base_url = echo_server.base_url
    async with AsyncModelsLab(api_key=KEY, base_url=base_url, clock=clock) as client:
        assert (await client.images.fetch("1")).succeeded
        assert (await client.images.fetch("2")).succeeded
    assert len(echo_server.bodies) == 2 and proxy.connections == 0


async def test_the_proxy_check_reads_the_mounts_if_httpx_internals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def moved(self: httpx.AsyncClient, url: httpx.URL) -> None:
        raise AttributeError("_transport_for_url is gone")

    monkeypatch.setattr(httpx.AsyncClient, "_transport_for_url", moved)
    async with httpx.AsyncClient(proxy="http://127.0.0.1:9", trust_env=False) as proxied:
        with pytest.raises(ConfigurationError):
            AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=proxied)
    async with httpx.AsyncClient(trust_env=False) as direct:
        AsyncModelsLab(api_key=KEY, base_url="http://127.0.0.1:8/api", http_client=direct)
