"""Downloads reach only public addresses unless the user opts in (no request forgery).

Output URLs and redirects come from servers the user does not control. Each hop is
checked before it is requested; a host name is resolved once by `CheckingBackend`, which
connects only to an address it checked (no DNS rebinding). Through a proxy (or your own
`http_client`) the name is checked by a lookup here, but what the proxy does is unseen.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore
import httpx

from .._errors import DownloadRefused
from .._http._proxy import Proxies, socks_support_needed
from .._urls import ip_literal

__all__ = ["OPT_IN", "AddressPolicy", "CheckingBackend", "DownloadTransport"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OPT_IN = "if you trust that server, create the client with allow_private_downloads=True"
"""How a user lets downloads reach private addresses, for refusal messages."""

# As anyio's (and RFC 8305's) own: how long one address may try alone before the next.
_HAPPY_EYEBALLS_DELAY = 0.25

# The prefix of IPv6 addresses a NAT64 gateway translates to the IPv4 address inside.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# What makes an address other than loopback non-public, most telling first.
_REFUSED_KINDS: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("a link-local address (such as a cloud metadata service)", lambda a: a.is_link_local),
    ("the unspecified address (this machine)", lambda a: a.is_unspecified),
    ("a multicast address", lambda a: a.is_multicast),
    ("a private address", lambda a: a.is_private),
    (
        "a reserved address",
        lambda a: a.is_reserved or (isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
    ),
    ("not a public address", lambda a: not a.is_global),
)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses downloads may connect to."""

    allow_private: bool = False
    """Every address (private, loopback, link-local...): the user opted in."""
    allow_loopback: bool = False
    """Loopback addresses too: the client's `base_url` is on this machine."""

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to (e.g. "a private address"), or None."""
        if self.allow_private:
            return None
        translated = _translated_ipv4(address)
        if translated is not None:
            # The packets go to the IPv4 address inside (IPv4-mapped, NAT64): judge it.
            why = self._kind_refused(translated)
            return None if why is None else f"{address}, which carries {translated}, {why}"
        why = self._kind_refused(address)
        if why is not None:
            return f"{address}, {why}"
        for inner in _tunnelled_ipv4(address):
            why = self._kind_refused(inner)
            if why is not None:
                return f"{address}, which carries {inner}, {why}"
        return None

    def _kind_refused(self, address: IPAddress) -> str | None:
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address (this machine)"
        for why, applies in _REFUSED_KINDS:
            if applies(address):
                return why
        return None

    def check_host(self, host: str) -> None:
        """Refuse `host` at once if it is an IP literal or a localhost name not allowed."""
        if self.allow_private:
            return
        address = ip_literal(host)
        if address is not None:
            why = self.refusal(address)
            if why is not None:
                raise DownloadRefused(f"its host is {why}")
            return
        name = host.lower().rstrip(".")
        if (name == "localhost" or name.endswith(".localhost")) and not self.allow_loopback:
            # RFC 6761: localhost names are this machine, whatever a resolver says.
            raise DownloadRefused(f"its host {host!r} is this machine (loopback)")

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[IPAddress]:
        """The addresses `host` resolved to, parsed; `DownloadRefused` if any is refused.

        One refused address refuses the name: that is how a rebinding attack looks.
        """
        parsed = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            why = self.refusal(address)
            if why is not None:
                raise DownloadRefused(f"its host {host!r} resolves to {why}")
            parsed.append(address)
        return parsed

    async def check_by_lookup(self, host: str) -> None:
        """Resolve `host` here and refuse it if any address is refused (for proxies).

        A lookup that fails is left to the proxy, whose resolver may know more names.
        """
        if self.allow_private or ip_literal(host) is not None:
            return
        try:
            addresses = await _resolve(host, 443)
        except OSError:
            return
        self.check_addresses(host, addresses)


def _translated_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address is a mere spelling of (IPv4-mapped, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 tunnel address leads to (6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    return found


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the resolver's order, each once."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        if text not in seen:
            seen.append(text)
    return seen


class CheckingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend: resolves a name once, checks it, connects to it."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    def __repr__(self) -> str:
        return f"CheckingBackend({self._policy!r})"

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve `host`, refuse it if any address is refused, connect to one checked."""
        self._policy.check_host(host)
        if ip_literal(host) is not None:
            addresses = [host.strip("[]")]
        else:
            try:
                with anyio.fail_after(timeout):
                    addresses = await _resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"looking up {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot look up {host}: {exc}") from None
        self._policy.check_addresses(host, addresses)
        return await self._connect_first(
            host,
            addresses,
            port=port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _connect_first(
        self,
        host: str,
        addresses: list[str],
        *,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first of `addresses` that answers ("happy eyeballs").

        Each address gets a head start of `_HAPPY_EYEBALLS_DELAY`, so one that swallows
        packets (a broken IPv6 route) costs a quarter second, not the connect timeout.
        """
        connected: list[httpcore.AsyncNetworkStream] = []
        failures: list[Exception] = []

        async def attempt(address: str, done: anyio.Event) -> None:
            try:
                stream = await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except Exception as exc:  # each failure is kept: none escapes as a group
                failures.append(exc)
            else:
                if connected:  # another address won meanwhile
                    await stream.aclose()
                else:
                    connected.append(stream)
                    group.cancel_scope.cancel()
            finally:
                done.set()

        async with anyio.create_task_group() as group:
            for address in addresses:
                done = anyio.Event()
                group.start_soon(attempt, address, done)
                with anyio.move_on_after(_HAPPY_EYEBALLS_DELAY):
                    await done.wait()
        if connected:
            return connected[0]
        timed_out = [exc for exc in failures if isinstance(exc, httpcore.ConnectTimeout)]
        if failures and len(timed_out) == len(failures):
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
        detail = "; ".join(dict.fromkeys(str(exc) or type(exc).__name__ for exc in failures))
        raise httpcore.ConnectError(f"cannot connect to {host} ({detail or 'no address'})")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never used by downloads: refused."""
        raise DownloadRefused("downloads do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        """Sleep, for httpcore's own retries."""
        await anyio.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, its connections made by `CheckingBackend` (unless all are allowed).

    httpx takes no network backend (encode/httpx#3749), so its pool is replaced.
    """

    def __init__(self, policy: AddressPolicy, ssl_context: Any, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        if policy.allow_private:
            return
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise TypeError("httpx's transport changed: downloads cannot be checked")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckingBackend(policy),
        )


class DownloadTransport(httpx.AsyncBaseTransport):
    """The download client's transport: direct connections checked, proxies as for API calls."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        ssl_context: Any,
        proxies: Proxies,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits if limits is not None else httpx.Limits()
        self._policy = policy
        self._direct = _PinnedTransport(policy, ssl_context, limits)
        self._proxies = proxies
        # Made now: a SOCKS proxy without its extra fails at setup, not mid-batch.
        with socks_support_needed():
            self._proxied = {
                url: httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, proxy=url)
                for url in proxies.all()
            }

    def __repr__(self) -> str:
        return f"DownloadTransport({self._policy!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` directly (checked at connect) or through its proxy."""
        proxy = self._proxies.for_url(request.url)
        if proxy is None:
            return await self._direct.handle_async_request(request)
        await self._policy.check_by_lookup(request.url.raw_host.decode("ascii"))
        return await self._proxied[proxy].handle_async_request(request)

    async def aclose(self) -> None:
        """Close every connection."""
        try:
            await self._direct.aclose()
        finally:
            for transport in self._proxied.values():
                await transport.aclose()
