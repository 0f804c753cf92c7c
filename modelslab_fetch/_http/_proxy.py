"""Refusing to hand the API key to a proxy in clear text.

Plain `http://` is allowed only to loopback, on the grounds that nothing crosses the
network. An `httpx.AsyncClient` trusts `HTTP_PROXY` by default, though, and httpx does not
exempt loopback: it would send the body, key included, unencrypted to the proxy. (Over
https a proxy only sees a CONNECT tunnel, so that is fine; the default aiohttp backend
never proxies loopback at all.)
"""

from __future__ import annotations

import httpx

from .._errors import ConfigurationError

__all__ = ["refuse_cleartext_proxy"]


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
