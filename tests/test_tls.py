"""TLS as users meet it, against servers on 127.0.0.1 with a CA made in the test.

The default trust refuses a CA it does not know (a certificate error of its own kind); `verify=`
a path or an SSLContext, or `SSL_CERT_FILE` set after import, make it trusted, for API calls
and downloads alike; a client certificate is presented when asked for; default headers
reach the API and the CDN.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from modelslab_fetch import (
    AsyncModelsLab,
    CertificateVerificationError,
    DownloadError,
    FetchResult,
)
from modelslab_fetch._errors import (
    BackendCertificateError,
    BackendConnectionError,
)
from modelslab_fetch._http._backends._contract import (
    Backend,
)
from modelslab_fetch._http._backends._httpx import HttpxBackend
from tests.backends import post
from tests.conftest import API_KEY
from tests.loopback import (
    Behaviour,
    LoopbackServer,
    Peer,
    answer,
    response_head,
    tls_client_context,
    tls_server_context,
)

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


@pytest.fixture
def site(tls_ca: trustme.CA) -> Iterator[LoopbackServer]:
    server = LoopbackServer(
        site_behaviour("127.0.0.1"), ssl_context=tls_server_context(tls_ca, *SITE_NAMES)
    )
    with server:
        yield server


async def fetch_and_download(client: AsyncModelsLab, folder: Path) -> list[Path]:
    result = await client.images.fetch(7)
    return await client.download(result, folder)


async def test_the_default_trust_refuses_a_ca_it_does_not_know(
    site: LoopbackServer, tmp_path: Path
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
    how: str, site: LoopbackServer, tls_ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    verify: object = {"path": ca_file, "str path": str(ca_file)}.get(how)
    if how == "ssl context":
        verify = ssl.create_default_context(cafile=str(ca_file))
    async with AsyncModelsLab(api_key=API_KEY, base_url=site.base_url, verify=verify) as client:  # type: ignore[arg-type]
        paths = await fetch_and_download(client, tmp_path)
    assert paths[0].read_bytes() == PNG


async def test_ssl_cert_file_set_after_import_is_honoured(
    site: LoopbackServer, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # modelslab_fetch is long imported
    async with AsyncModelsLab(api_key=API_KEY, base_url=site.base_url) as client:
        paths = await fetch_and_download(client, tmp_path)
    assert paths[0].read_bytes() == PNG


async def test_trust_env_false_ignores_ssl_cert_file(
    site: LoopbackServer, ca_file: Path, monkeypatch: pytest.MonkeyPatch
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
    server = LoopbackServer(
        site_behaviour("127.0.0.1"),
        ssl_context=tls_server_context(tls_ca, *SITE_NAMES, client_ca=client_ca),
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


Hostile = Callable[..., LoopbackServer]


async def test_an_untrusted_certificate_is_a_certificate_error(
    hostile: Hostile, backend: Backend
) -> None:
    server = hostile(answer(), tls=True)
    with pytest.raises(BackendCertificateError) as caught:
        await post(backend, server)
    assert re.search(r"self[- ]signed certificate in certificate chain", caught.value.detail)
    assert isinstance(caught.value, BackendConnectionError)


async def test_the_tls_server_works_for_a_client_that_trusts_its_ca(
    hostile: Hostile, tls_ca: object
) -> None:
    import trustme

    assert isinstance(tls_ca, trustme.CA)
    server = hostile(answer(body=b"{}"), tls=True)
    async with httpx.AsyncClient(verify=tls_client_context(tls_ca)) as http:
        response = await HttpxBackend(http, owned=False).post(
            server.url(), b"{}", {}, httpx.Timeout(5)
        )
    assert getattr(response, "content", None) == b"{}"


@pytest.mark.integration
async def test_default_headers_reach_the_api_and_the_cdn(
    site: LoopbackServer, ca_file: Path, tmp_path: Path
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


def test_clients_share_one_context_per_ca_bundle_and_read_a_replaced_bundle_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading a CA bundle costs ~20 ms of CPU: a client per job must not pay it each time.
    # A bundle rewritten in place (another CA, another size) is a new trust, read anew.
    from modelslab_fetch._tls import make_ssl_context

    bundle = tmp_path / "ca.pem"
    first_ca, second_ca = trustme.CA(), trustme.CA()
    first_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    first = make_ssl_context()
    assert make_ssl_context() is first
    assert make_ssl_context(bundle) is first  # verify= the same path: the same trust
    bundle.write_bytes(second_ca.cert_pem.bytes() + second_ca.cert_pem.bytes())
    second = make_ssl_context()
    assert second is not first
    assert second.get_ca_certs() != first.get_ca_certs()  # the new CA, read from the file


def test_a_client_certificate_never_goes_into_a_shared_context(
    tls_ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    from modelslab_fetch._tls import make_ssl_context

    identity = tls_ca.issue_cert("client@example.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    identity.cert_chain_pems[0].write_to_path(str(cert_file))
    identity.private_key_pem.write_to_path(str(key_file))
    shared = make_ssl_context(ca_file)
    for verify in (ca_file, True):
        with_cert = make_ssl_context(verify, (str(cert_file), str(key_file)))
        assert with_cert is not shared and with_cert is not make_ssl_context(verify)
