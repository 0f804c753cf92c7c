"""Client options resolved from arguments and the environment, checked once at construction."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from ._errors import AuthenticationError, ConfigurationError, UnusableURL
from ._numbers import checked_count, checked_seconds
from ._retry_policy import RetryPolicy
from ._tls import CertTypes, VerifyTypes, make_ssl_context
from ._urls import checked_http_url

if TYPE_CHECKING:
    from ._webhook_config import WebhookSettings

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "ClientConfig",
]


class Secret:
    """The API key, held so that no repr, str, pickle or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The key itself, for the one place that puts it in a request body."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the API key is not picklable: pass it to the client again")


class NotGiven:
    """The type of `NOT_GIVEN`: "leave this setting as it is" (None can be a setting)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN = NotGiven()
"""The default of `with_options` arguments: keep the client's own setting."""

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

    api_key: Secret
    base_url: str
    timeout: httpx.Timeout
    max_retries: int
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_requests_per_second: float | None = None
    ssl_context: ssl.SSLContext | None = None
    """The TLS context of every connection (None: made on first use from the defaults)."""
    proxy: str | None = None
    """An explicit proxy URL (http, https, socks5); None: the environment's, if trusted."""
    trust_env: bool = True
    """Whether HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE and SSL_CERT_DIR are honoured."""
    default_headers: tuple[tuple[str, str], ...] = ()
    """Headers sent with every request (API calls and downloads)."""
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    """How `fetch()` retries transient failures."""
    http_backend: str = "auto"
    """"auto", "aiohttp" or "httpx": which HTTP library carries API calls."""
    allow_private_downloads: bool = False
    """Whether downloads may reach private, loopback and link-local addresses."""
    webhooks: WebhookSettings | None = None
    """Where ModelsLab POSTs finished jobs, and the secret of its URLs; None: no webhooks."""

    @property
    def retries(self) -> int:
        """How many times `fetch()` retries: the retry policy's count, else `max_retries`."""
        policy = self.retry_policy.max_retries
        return self.max_retries if policy is None else policy

    def with_changes(
        self,
        *,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven | None = NOT_GIVEN,
    ) -> ClientConfig:
        """A copy with the given settings changed, checked as at construction."""
        changes: dict[str, object] = {}
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = _resolve_timeout(timeout)
        if not isinstance(max_retries, NotGiven):
            changes["max_retries"] = checked_count("max_retries", max_retries, 0)
        if not isinstance(default_headers, NotGiven):
            changes["default_headers"] = _resolve_headers(default_headers)
        if not isinstance(retry_policy, NotGiven):
            changes["retry_policy"] = _resolve_retry_policy(retry_policy)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def base_url_is_loopback(self) -> bool:
        """Whether `base_url` is on this machine (a simulator), whose outputs are too."""
        return is_loopback(httpx.URL(self.base_url).host)

    def tls(self) -> ssl.SSLContext:
        """The TLS context for every connection this client makes."""
        return self.ssl_context if self.ssl_context is not None else make_ssl_context()

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries}, max_concurrency={self.max_concurrency}, "
            f"max_requests_per_second={self.max_requests_per_second}, "
            f"proxy={_without_credentials(self.proxy)!r}, trust_env={self.trust_env}, "
            f"retry_policy={self.retry_policy!r})"
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
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
        default_headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
        http_backend: str = "auto",
        allow_private_downloads: bool = False,
    ) -> ClientConfig:
        """Combine explicit options with `MODELSLAB_API_KEY` / `MODELSLAB_BASE_URL`.

        The TLS context is made here, at client creation: `SSL_CERT_FILE` set by a
        program before it creates a client is honoured, as httpx does.
        """
        env = os.environ
        if not isinstance(trust_env, bool):
            raise ConfigurationError(f"trust_env must be True or False; got {trust_env!r}")
        if not isinstance(allow_private_downloads, bool):
            raise ConfigurationError(
                f"allow_private_downloads must be True or False; got {allow_private_downloads!r}"
            )
        return cls(
            api_key=_resolve_api_key(api_key, env),
            base_url=_resolve_base_url(base_url, env),
            timeout=_resolve_timeout(timeout),
            max_retries=checked_count("max_retries", max_retries, 0),
            max_concurrency=checked_count("max_concurrency", max_concurrency, 1),
            max_requests_per_second=None
            if max_requests_per_second is None
            else checked_seconds(
                "max_requests_per_second", max_requests_per_second, positive=True, what=" or None"
            ),
            ssl_context=make_ssl_context(verify, cert, trust_env=trust_env),
            proxy=_resolve_proxy(proxy),
            trust_env=trust_env,
            default_headers=_resolve_headers(default_headers),
            retry_policy=_resolve_retry_policy(retry_policy),
            http_backend=_resolve_http_backend(http_backend),
            allow_private_downloads=allow_private_downloads,
        )


def _resolve_api_key(api_key: str | None, env: Mapping[str, str]) -> Secret:
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
    return Secret(key)


def _resolve_base_url(base_url: str | None, env: Mapping[str, str]) -> str:
    given = base_url if base_url is not None else env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if not isinstance(given, str):
        raise ConfigurationError(
            f"base_url must be a str, like {DEFAULT_BASE_URL!r}; got {type(given).__name__}",
            option="base_url",
        )
    text = given.strip()
    if any(char.isspace() for char in text):
        raise ConfigurationError(
            f"base_url cannot contain spaces or line breaks: {text!r}; give the API root, "
            f"like {DEFAULT_BASE_URL!r}",
            option="base_url",
        )
    try:
        url = checked_http_url(text)
    except UnusableURL as exc:
        raise ConfigurationError(
            f"base_url {text!r} is not a usable URL: {exc}; give the API root as an "
            f"http(s) URL, like {DEFAULT_BASE_URL!r}",
            option="base_url",
        ) from None
    if url.query or url.fragment:
        raise ConfigurationError(
            f"base_url cannot carry a query or fragment: {text!r}", option="base_url"
        )
    if url.userinfo:
        raise ConfigurationError(
            "base_url cannot carry credentials; pass api_key=... instead", option="base_url"
        )
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host!r} in base_url: the API key travels in "
            "the request body and would cross the network unencrypted; use https:// "
            "(plain http is allowed only for loopback hosts such as 127.0.0.1)",
            option="base_url",
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


def _resolve_retry_policy(retry_policy: RetryPolicy | None) -> RetryPolicy:
    if retry_policy is None:
        return RetryPolicy()
    if not isinstance(retry_policy, RetryPolicy):
        raise ConfigurationError(
            f"retry_policy must be a RetryPolicy; got {type(retry_policy).__name__}"
        )
    return retry_policy


def _resolve_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        # Each limit a finite number of seconds above 0, or None: aiohttp reads 0 as "no
        # limit" (httpx as "time out at once") and cannot schedule an infinite one.
        for name in ("connect", "read", "write", "pool"):
            seconds = getattr(timeout, name)
            if seconds is not None:
                what = " of seconds, or None for no limit"
                checked_seconds(f"timeout.{name}", seconds, positive=True, what=what)
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    what = " of seconds, an httpx.Timeout or None"
    return httpx.Timeout(checked_seconds("timeout", timeout, positive=True, what=what))


_PROXY_SCHEMES = frozenset({"http", "https", "socks5", "socks5h"})
# Headers the SDK owns: the body is always JSON, its length and framing are the
# transport's, and the host is the base URL's.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "transfer-encoding", "host", "accept-encoding"}
)


def _resolve_proxy(proxy: str | httpx.URL | None) -> str | None:
    if proxy is None:
        return None
    text = str(proxy).strip()
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"proxy is not a URL: {_without_credentials(text)!r}") from exc
    if url.scheme not in _PROXY_SCHEMES or not url.host:
        raise ConfigurationError(
            "proxy must be an http://, https://, socks5:// or socks5h:// URL with a host, "
            f"like 'http://proxy.example:3128'; got {_without_credentials(text)!r}"
        )
    return text


def _without_credentials(proxy: str | None) -> str | None:
    """`proxy` as it may be shown: a password in it is never printed."""
    if proxy is None or "@" not in proxy:
        return proxy
    scheme, _, rest = proxy.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _resolve_headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"default_headers must be a mapping of names to values; got {type(headers).__name__}"
        )
    resolved = []
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError("default_headers names and values must be str")
        if name.strip().lower() in _RESERVED_HEADERS:
            raise ConfigurationError(
                f"default_headers cannot set {name!r}: the SDK sets it for every request"
            )
        if any(char in name + value for char in "\r\n\0"):
            raise ConfigurationError(f"default_headers: {name!r} holds a line break or NUL")
        resolved.append((name.strip(), value))
    return tuple(resolved)


HTTP_BACKENDS = ("auto", "aiohttp", "httpx")


def _resolve_http_backend(http_backend: str) -> str:
    if http_backend not in HTTP_BACKENDS:
        raise ConfigurationError(
            f"http_backend must be one of {', '.join(map(repr, HTTP_BACKENDS))}; "
            f"got {http_backend!r}"
        )
    return http_backend
