"""Client options: the key, the base URL and its safety rule, timeouts, retries."""

from __future__ import annotations

import httpx
import pytest

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
        ("ftp://modelslab.com/api", "http(s) URL"),
        ("modelslab.com/api", "http(s) URL"),
        ("https://modelslab.com/api?x=1", "query or fragment"),
        ("https://user:pw@modelslab.com/api", "credentials"),
        ("https://exa\x00mple.com/api", "not a URL"),
        ("https://:80/api", "http(s) URL"),
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        AsyncModelsLab(api_key=API_KEY, base_url=url)


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
