"""Client options: the key, the base URL and its safety rule, timeouts, retries."""

from __future__ import annotations

import httpx
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_fetch import (
    AsyncModelsLab,
    AuthenticationError,
    ConfigurationError,
    ModelsLab,
)
from tests.conftest import API_KEY


def test_the_key_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", API_KEY)
    client = AsyncModelsLab()
    assert client._config.api_key.get_secret_value() == API_KEY


def test_an_explicit_key_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", "from-env")
    assert AsyncModelsLab(api_key="explicit")._config.api_key.get_secret_value() == "explicit"


@pytest.mark.parametrize("key", [None, "", "   "])
@pytest.mark.parametrize("client_class", [AsyncModelsLab, ModelsLab])
def test_a_missing_key_says_how_to_provide_one(key: str | None, client_class: type) -> None:
    with pytest.raises(AuthenticationError) as caught:
        client_class(api_key=key)
    assert "api_key=" in str(caught.value)
    assert "MODELSLAB_API_KEY" in str(caught.value)


def test_a_key_of_the_wrong_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="api_key must be a str"):
        AsyncModelsLab(api_key=123)  # type: ignore[arg-type]


def test_default_base_url() -> None:
    assert AsyncModelsLab(api_key=API_KEY).base_url == "https://modelslab.com/api"


def test_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_BASE_URL", "http://127.0.0.1:8000/api/")
    assert AsyncModelsLab(api_key=API_KEY).base_url == "http://127.0.0.1:8000/api"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api",
        "http://127.5.6.7/api",
        "http://localhost:8787/api",
        "http://[::1]:8000/api",
        "https://eu.modelslab.example/api",
    ],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    assert AsyncModelsLab(api_key=API_KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://modelslab.com/api", "refusing plain http://"),
        ("http://10.0.0.5/api", "refusing plain http://"),
        ("ftp://modelslab.com/api", "not ftp://"),
        ("modelslab.com/api", "it has no scheme"),
        ("https://modelslab.com/api?x=1", "query or fragment"),
        ("https://user:pw@modelslab.com/api", "credentials"),
        ("https://exa\x00mple.com/api", "control or invalid character"),
        ("https://:80/api", "it has no host"),
        ("https:///api", "it has no host"),
        ("https://modelslab.com:99999/api", "port 99999 is not a TCP port"),
        ("https://modelslab.com:0/api", "port 0 is not a TCP port"),
        ("http://127.0.0.1:65536/api", "port 65536 is not a TCP port"),
        ("https://model slab.com/api", "spaces"),
        ("https://modelslab.com/my api", "spaces"),
        ("https://modelslab.com/api\t", None),  # stripped: a tab at the end is fine
        ("https://xn--/api", "not a valid host name"),
        ("https://xn--ls8h.la/api", "not a valid international domain name"),
        ("https://xn--a.com/api", "not a valid international domain name"),
        ("https://a..b/api", "not a valid host name"),
        ("https://-modelslab-.com/api", "not a valid host name"),
        ("https://%zz/api", "not a valid host name"),
        ("https://1.2.3.4.5/api", "neither an IP address nor a host name"),
        ("https://256.1.1.1/api", "not a URL"),
        ("https://exa\ud83dmple.com/api", "control or invalid character"),
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str, complaint: str | None) -> None:
    if complaint is None:
        assert AsyncModelsLab(api_key=API_KEY, base_url=url).base_url == url.strip()
        return
    with pytest.raises(ConfigurationError) as caught:
        AsyncModelsLab(api_key=API_KEY, base_url=url)
    assert complaint in str(caught.value)
    assert "base_url" in str(caught.value)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
        st.one_of(
            st.sampled_from(["modelslab.com", "127.0.0.1", "[::1]", "xn--", "localhost"]),
            st.text(max_size=12),
        ),
        st.one_of(st.just(""), st.integers(-3, 10**6).map(":{}".format), st.text(max_size=4)),
        st.text(max_size=8),
    )
    | st.text(max_size=40)
)
def test_any_base_url_is_refused_at_construction_or_usable(url: str) -> None:
    # Whatever the string, the client is built with a URL both HTTP libraries read (host,
    # port in range), or refused then with ConfigurationError: never an untyped error,
    # never one that waits for the first request.
    try:
        client = AsyncModelsLab(api_key=API_KEY, base_url=url)
    except ConfigurationError:
        return
    parsed = httpx.URL(client.base_url)
    assert parsed.host and parsed.scheme in ("http", "https")
    assert parsed.port is None or 1 <= parsed.port <= 65535
    via_aiohttp = yarl.URL(client.base_url)
    assert via_aiohttp.host and via_aiohttp.port is not None and 1 <= via_aiohttp.port <= 65535


def test_timeouts_accept_seconds_an_httpx_timeout_or_none() -> None:
    assert AsyncModelsLab(api_key=API_KEY, timeout=5).timeout == httpx.Timeout(5.0)
    custom = httpx.Timeout(3.0, connect=1.0)
    assert AsyncModelsLab(api_key=API_KEY, timeout=custom).timeout is custom
    assert AsyncModelsLab(api_key=API_KEY, timeout=None).timeout == httpx.Timeout(None)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        AsyncModelsLab(api_key=API_KEY, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_retries", [-1, 1.5, "3", None, True])
def test_bad_max_retries_are_refused(max_retries: object) -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        AsyncModelsLab(api_key=API_KEY, max_retries=max_retries)  # type: ignore[arg-type]


def test_options_are_readable_back() -> None:
    client = AsyncModelsLab(api_key=API_KEY, max_retries=0, timeout=2)
    assert client.max_retries == 0
    assert client.timeout == httpx.Timeout(2.0)
    assert repr(client) == ("AsyncModelsLab(base_url='https://modelslab.com/api', max_retries=0)")
    assert "max_retries=0" in repr(client._config)
