"""Client options resolved from arguments and the environment, checked once at construction."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from ._errors import AuthenticationError, ConfigurationError

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ClientConfig",
]

API_KEY_ENV = "MODELSLAB_API_KEY"
BASE_URL_ENV = "MODELSLAB_BASE_URL"
DEFAULT_BASE_URL = "https://modelslab.com/api"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_CONCURRENCY = 32


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Everything a client needs to talk to ModelsLab, validated.

    Built by `ClientConfig.resolve`; never prints the key.
    """

    api_key: SecretStr
    base_url: str
    timeout: httpx.Timeout
    max_retries: int
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_requests_per_second: float | None = None

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries}, max_concurrency={self.max_concurrency}, "
            f"max_requests_per_second={self.max_requests_per_second})"
        )

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_requests_per_second: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """Combine explicit options with `MODELSLAB_API_KEY` / `MODELSLAB_BASE_URL`."""
        env = os.environ if environ is None else environ
        return cls(
            api_key=_resolve_api_key(api_key, env),
            base_url=_resolve_base_url(base_url, env),
            timeout=_resolve_timeout(timeout),
            max_retries=_resolve_max_retries(max_retries),
            max_concurrency=_resolve_max_concurrency(max_concurrency),
            max_requests_per_second=_resolve_rate(max_requests_per_second),
        )


def _resolve_api_key(api_key: str | None, env: Mapping[str, str]) -> SecretStr:
    key = api_key if api_key is not None else env.get(API_KEY_ENV)
    if not isinstance(key, str):
        if key is None:
            raise AuthenticationError(
                f"no API key: pass api_key=... to the client or set {API_KEY_ENV}"
            )
        raise ConfigurationError(f"api_key must be a str, got {type(key).__name__}")
    key = key.strip()
    if not key:
        raise AuthenticationError(
            f"the API key is empty: pass api_key=... to the client or set {API_KEY_ENV}"
        )
    return SecretStr(key)


def _resolve_base_url(base_url: str | None, env: Mapping[str, str]) -> str:
    text = (base_url if base_url is not None else env.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip()
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a URL: {text!r}") from exc
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL with a host, like {DEFAULT_BASE_URL!r}; got {text!r}"
        )
    if url.query or url.fragment:
        raise ConfigurationError(f"base_url cannot carry a query or fragment: {text!r}")
    if url.userinfo:
        raise ConfigurationError("base_url cannot carry credentials; pass api_key=... instead")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host!r}: the API key travels in the request "
            "body and would cross the network unencrypted; use https:// "
            "(plain http is allowed only for loopback hosts such as 127.0.0.1)"
        )
    return text.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError(
            f"timeout must be seconds (a number), an httpx.Timeout or None; got {timeout!r}"
        )
    if not math.isfinite(timeout) or timeout <= 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds; got {timeout!r}")
    return httpx.Timeout(float(timeout))


def _resolve_max_retries(max_retries: int) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an int >= 0; got {max_retries!r}")
    return max_retries


def _resolve_max_concurrency(max_concurrency: int) -> int:
    if (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ConfigurationError(f"max_concurrency must be an int >= 1; got {max_concurrency!r}")
    return max_concurrency


def _resolve_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ConfigurationError(
            f"max_requests_per_second must be a positive number or None; got {rate!r}"
        )
    return float(rate)
