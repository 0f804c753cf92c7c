"""Proxies: which one, if any, a request goes through, and what using one needs.

Never a proxy for loopback: that is how the key to a plain-http loopback `base_url` never
crosses one in clear text (an `http_client` that would is refused).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from .._config import is_loopback
from .._errors import ConfigurationError

__all__ = ["Proxies", "refuse_cleartext_proxy", "socks_support_needed"]


@dataclass(frozen=True)
class Proxies:
    """The proxies a client may use, the environment's read once, when it is created."""

    explicit: str | None = None
    """`proxy=`: every request but those to loopback goes through it."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Without `proxy=` and with `trust_env`: the environment's, by scheme (or `all`)."""

    @classmethod
    def of(cls, proxy: str | None, *, trust_env: bool) -> Proxies:
        """The proxies for the options `proxy=` and `trust_env=`."""
        if proxy is not None or not trust_env:
            return cls(proxy)
        found = urllib.request.getproxies()
        return cls(
            None,
            {
                scheme: url if "://" in url else f"http://{url}"
                for scheme, url in found.items()
                if scheme in ("http", "https", "all") and url
            },
        )

    def all(self) -> set[str]:
        """Every proxy a request may go through."""
        return {url for url in (self.explicit, *self.environment.values()) if url is not None}

    def for_url(self, url: httpx.URL) -> str | None:
        """The proxy a request to `url` goes through, or None for a direct connection."""
        # Plain http is allowed only to loopback on the grounds that nothing crosses the
        # network: so loopback never goes through a proxy, whatever is configured.
        if is_loopback(url.host):
            return None
        if self.explicit is not None:
            return self.explicit
        proxy = self.environment.get(url.scheme) or self.environment.get("all")
        if proxy is None or urllib.request.proxy_bypass(url.raw_host.decode("ascii")):
            return None
        return proxy


@contextmanager
def socks_support_needed() -> Iterator[None]:
    """Around making httpx clients: a socks5:// proxy without socksio, said with the fix."""
    try:
        yield
    except ImportError as exc:
        raise ConfigurationError(
            f"a socks5:// proxy needs SOCKS support: pip install 'modelslab-fetch[socks]' ({exc})"
        ) from None


def refuse_cleartext_proxy(http_client: httpx.AsyncClient, base_url: str) -> None:
    """Raise `ConfigurationError` if `http_client` would proxy plain-http `base_url` requests.

    Over plain http the proxy would read the request body, and with it the API key.
    """
    url = httpx.URL(base_url)
    if url.scheme != "http" or not _goes_through_proxy(http_client, url):
        return
    raise ConfigurationError(
        f"refusing to send the API key through a proxy unencrypted: base_url {base_url!r} "
        "is plain http and your http_client routes it through a proxy (HTTP_PROXY or "
        "ALL_PROXY in the environment, or proxy=/mounts=). Use an https:// base_url, create "
        "the client with httpx.AsyncClient(trust_env=False), or add the host to NO_PROXY"
    )


def _goes_through_proxy(http_client: httpx.AsyncClient, url: httpx.URL) -> bool:
    try:
        transport = http_client._transport_for_url(url)
    except Exception:  # a private httpx API: if it changed, judge by the mounts alone
        transport = None
        for pattern, mounted in http_client._mounts.items():
            if pattern.matches(url):
                transport = mounted
                break
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, _proxy_pools()):
        return True
    # A transport of another kind (a wrapper, httpx-aiohttp...) that says it proxies.
    return getattr(transport, "proxy", None) is not None or "Proxy" in type(pool).__name__


def _proxy_pools() -> tuple[type, ...]:
    import httpcore  # noqa: PLC0415 - only clients given an http_client ask

    return (httpcore.AsyncHTTPProxy, httpcore.AsyncSOCKSProxy)
