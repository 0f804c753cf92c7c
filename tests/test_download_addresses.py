"""Downloads reach only public addresses unless the user opts in (no request forgery).

Real sockets on 127.0.0.1: a refused download must not even connect. The API is mocked
(respx) or never contacted; the output URLs point at real local servers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import anyio
import httpcore
import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, DownloadError, FetchResult, ModelsLab
from modelslab_fetch._jobs import _addresses as guard
from modelslab_fetch._jobs._addresses import AddressPolicy
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL
from tests.loopback import Behaviour, LoopbackServer, answer, raw

Hostile = Callable[..., LoopbackServer]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LOOPBACK_API = "http://127.0.0.1:9/api"  # a local simulator's kind of base_url


def result(url: str, request_id: str = "1") -> FetchResult:
    body = {"status": "success", "id": request_id, "output": [url]}
    return FetchResult.from_body(body, request_id=request_id)


def png_server(hostile: Hostile) -> LoopbackServer:
    return hostile(answer(body=PNG, headers={"Content-Type": "image/png"}))


def redirect_to(location: str) -> Behaviour:
    return raw(
        b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\nContent-Length: 0\r\n\r\n"
    )


class Names:
    """A resolver of our own: `names.table["cdn.test"] = [...]`; `.lookups` lists the calls."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}
        self.lookups: list[str] = []


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Names:
    fake = Names()
    real = guard._resolve

    async def resolve(host: str, port: int) -> list[str]:
        fake.lookups.append(host)
        if host in fake.table:
            return fake.table[host]
        return await real(host, port)

    monkeypatch.setattr(guard, "_resolve", resolve)
    return fake


# --- the API says one thing, the output URL points home -------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "127.1.2.3"])
async def test_an_output_url_to_this_machine_is_refused_without_connecting(
    hostile: Hostile, tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter, host: str
) -> None:
    server = png_server(hostile)
    router.post(IMAGES_URL).respond(
        json={"status": "success", "id": 1, "output": [f"http://{host}:{server.port}/a.png"]}
    )
    router.route(host__regex=r".*").pass_through()  # nothing else mocked: real sockets
    job = await client.images.fetch(1)
    with pytest.raises(DownloadError) as caught:
        await client.download(job, tmp_path)
    message = str(caught.value)
    assert "loopback" in message
    assert "allow_private_downloads=True" in message
    assert server.connections == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://10.1.2.3/a.png", "a private address"),
        ("http://192.168.1.1/a.png", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/a.png", "link-local"),
        ("http://[fc00::1]/a.png", "a private address"),
        ("http://0.0.0.0:8080/a.png", "unspecified"),
        ("http://[::]/a.png", "unspecified"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("http://100.64.0.1/a.png", "not a public address"),
        ("http://240.0.0.1/a.png", "a private address"),
        ("http://[::ffff:10.0.0.1]/a.png", "carries 10.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/a.png", "carries 169.254.169.254"),
        ("http://[2002:c0a8:0101::1]/a.png", "carries 192.168.1.1"),
    ],
)
async def test_private_and_special_addresses_are_refused_by_default(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter, url: str, kind: str
) -> None:
    route = router.route().respond(content=PNG)
    with pytest.raises(DownloadError, match="refusing to download") as caught:
        await client.download(result(url), tmp_path)
    assert kind in str(caught.value)
    assert not route.called
    assert list(tmp_path.iterdir()) == []


def test_public_addresses_pass_and_the_rest_is_named() -> None:
    policy = AddressPolicy()
    for public in ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"):
        assert policy.refusal(ipaddress.ip_address(public)) is None, public
    loopback = AddressPolicy(allow_loopback=True)
    assert loopback.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert loopback.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert loopback.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    opted_in = AddressPolicy(allow_private=True)
    assert opted_in.refusal(ipaddress.ip_address("169.254.169.254")) is None


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect(
    hostile: Hostile, tmp_path: Path, names: Names
) -> None:
    server = png_server(hostile)
    names.table["cdn.test"] = ["127.0.0.1"]
    names.table["mixed.test"] = ["8.8.8.8", "127.0.0.1"]  # one bad address refuses the name
    async with AsyncModelsLab(api_key=API_KEY, base_url=BASE_URL) as client:
        for host in ("cdn.test", "mixed.test"):
            with pytest.raises(DownloadError) as caught:
                await client.download(result(f"http://{host}:{server.port}/a.png"), tmp_path)
            assert f"{host!r} resolves to 127.0.0.1" in str(caught.value)
    assert server.connections == 0
    assert names.lookups == ["cdn.test", "mixed.test"]  # refusals are final: not retried


async def test_the_address_checked_is_the_address_connected_to(
    hostile: Hostile, tmp_path: Path, names: Names
) -> None:
    # `cdn.test` exists only in our resolver: the download can only succeed if the
    # connection goes to the address that was checked, with no lookup of its own.
    server = png_server(hostile)
    names.table["cdn.test"] = ["127.0.0.1"]
    async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API) as client:
        paths = await client.download(result(f"http://cdn.test:{server.port}/a.png"), tmp_path)
    assert paths[0].read_bytes() == PNG
    assert names.lookups == ["cdn.test"]
    assert b"host: cdn.test" in server.requests[0].lower()


async def test_a_redirect_to_a_private_address_is_refused(
    hostile: Hostile, tmp_path: Path, names: Names
) -> None:
    names.table["metadata.test"] = ["169.254.169.254"]
    for target in ("http://10.9.8.7/x.png", "http://metadata.test/latest/meta-data/"):
        hop = hostile(redirect_to(target))
        async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API) as client:
            with pytest.raises(DownloadError) as caught:
                await client.download(result(hop.url("/a.png")), tmp_path)
        message = str(caught.value)
        assert "refusing to download" in message
        assert "private" in message or "link-local" in message
        assert len(hop.requests) == 1
    assert list(tmp_path.iterdir()) == []


async def test_a_redirect_home_from_a_public_looking_hop_is_refused(
    hostile: Hostile, tmp_path: Path, router: respx.MockRouter
) -> None:
    # The CDN (mocked, as if public) redirects to a real server on loopback.
    home = png_server(hostile)
    router.get("https://cdn.example/a.png").respond(
        302, headers={"Location": f"http://127.0.0.1:{home.port}/a.png"}
    )
    async with AsyncModelsLab(api_key=API_KEY) as client:
        with pytest.raises(DownloadError, match="redirected to") as caught:
            await client.download(result("https://cdn.example/a.png"), tmp_path)
    assert "loopback" in str(caught.value)
    assert home.connections == 0


# --- where loopback and private addresses are allowed ---------------------------------------


async def test_loopback_outputs_are_fetched_when_the_api_itself_is_on_loopback(
    hostile: Hostile, tmp_path: Path
) -> None:
    server = png_server(hostile)
    async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API) as client:
        paths = await client.download(result(server.url("/a.png")), tmp_path)
    assert paths[0].read_bytes() == PNG


async def test_allow_private_downloads_opts_in(hostile: Hostile, tmp_path: Path) -> None:
    server = png_server(hostile)
    async with AsyncModelsLab(api_key=API_KEY, allow_private_downloads=True) as client:
        paths = await client.download(result(server.url("/a.png")), tmp_path)
    assert paths[0].read_bytes() == PNG
    with ModelsLab(api_key=API_KEY, allow_private_downloads=True) as blocking:
        again = blocking.download(result(server.url("/b.png"), "2"), tmp_path)
    assert again[0].read_bytes() == PNG
    with pytest.raises(ValueError, match="allow_private_downloads must be True or False"):
        AsyncModelsLab(api_key=API_KEY, allow_private_downloads="yes")  # type: ignore[arg-type]


# --- connections the SDK does not make itself: checked by a lookup ----------------------------


async def test_your_own_http_client_is_checked_too(
    hostile: Hostile, tmp_path: Path, names: Names
) -> None:
    server = png_server(hostile)
    names.table["cdn.test"] = ["10.0.0.7"]
    async with (
        httpx.AsyncClient(follow_redirects=True) as http,
        AsyncModelsLab(api_key=API_KEY, base_url=BASE_URL, http_client=http) as client,
    ):
        with pytest.raises(DownloadError, match="loopback"):
            await client.download(result(server.url("/a.png")), tmp_path)
        with pytest.raises(DownloadError, match=r"resolves to 10\.0\.0\.7"):
            await client.download(result("http://cdn.test/a.png"), tmp_path)
    assert server.connections == 0


async def test_through_a_proxy_addresses_and_names_are_checked_before_it_is_asked(
    recording_proxy: LoopbackServer, tmp_path: Path, names: Names
) -> None:
    names.table["cdn.test"] = ["192.168.0.10"]
    proxy = f"http://127.0.0.1:{recording_proxy.port}"
    async with AsyncModelsLab(api_key=API_KEY, proxy=proxy) as client:
        for url in ("http://10.1.1.1/a.png", "http://cdn.test/a.png"):
            with pytest.raises(DownloadError, match="private"):
                await client.download(result(url), tmp_path)
    assert recording_proxy.connections == 0


# --- connecting to the addresses checked: the first that answers ---------------------------


class Inner:
    """A stand-in for the backend that opens sockets: `behaviour[address]` says what happens."""

    def __init__(self, behaviour: dict[str, str]) -> None:
        self.behaviour = behaviour
        self.closed: list[str] = []

    async def connect_tcp(self, address: str, port: int, **_options: object) -> object:
        what = self.behaviour[address]
        if what == "hangs":
            await anyio.sleep_forever()
        if what == "refuses":
            raise httpcore.ConnectError(f"{address}: connection refused")
        if what == "times out":
            raise httpcore.ConnectTimeout(f"{address}: timed out")
        inner = self

        class Stream:
            async def aclose(self) -> None:
                inner.closed.append(address)

        return Stream()


async def test_an_address_that_hangs_costs_a_quarter_second_not_the_timeout() -> None:
    backend = guard.CheckingBackend(AddressPolicy(allow_loopback=True))
    backend._inner = Inner({"127.0.0.2": "hangs", "127.0.0.3": "answers"})  # type: ignore[assignment]
    started = anyio.current_time()
    with anyio.fail_after(5):
        await backend._connect_first(
            "cdn.test",
            ["127.0.0.2", "127.0.0.3"],
            port=80,
            timeout=30,
            local_address=None,
            socket_options=None,
        )
    assert anyio.current_time() - started == pytest.approx(0.25, abs=0.2)


@pytest.mark.parametrize(
    ("outcomes", "error"),
    [
        (["refuses", "refuses"], httpcore.ConnectError),
        (["times out", "times out"], httpcore.ConnectTimeout),
        (["times out", "refuses"], httpcore.ConnectError),
    ],
)
async def test_when_no_address_answers_one_connect_error_says_why(
    outcomes: list[str], error: type[Exception]
) -> None:
    addresses = ["127.0.0.2", "127.0.0.3"]
    backend = guard.CheckingBackend(AddressPolicy(allow_loopback=True))
    backend._inner = Inner(dict(zip(addresses, outcomes, strict=True)))  # type: ignore[assignment]
    with pytest.raises(error) as caught:
        await backend._connect_first(
            "cdn.test", addresses, port=80, timeout=1, local_address=None, socket_options=None
        )
    assert type(caught.value) is error  # one error, never a group
    assert "cdn.test" in str(caught.value)
