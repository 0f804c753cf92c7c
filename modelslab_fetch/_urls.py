"""Whether a URL can be used at all: an http(s) scheme, a host that can be looked up, a port.

httpx parses leniently; this one check lets each caller refuse with its own typed error.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import httpx
import idna

from ._errors import UnusableURL

__all__ = ["checked_http_url", "ip_literal"]

# A DNS label as hosts use them: letters, digits, hyphens (and underscores, which some
# internal names carry and resolvers accept), 1-63 of them, no hyphen at either end.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_MAX_HOST_LENGTH = 253


def checked_http_url(text: object) -> httpx.URL:
    """`text` parsed, if it is an http(s) URL with a usable host and port; else `UnusableURL`."""
    if not isinstance(text, str):
        raise UnusableURL(f"not text but {type(text).__name__}")
    for char in text:
        if unicodedata.category(char).startswith("C"):
            raise UnusableURL(f"it holds the control or invalid character {char!r}")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, UnicodeError, TypeError) as exc:
        # IDNAError and UnicodeEncodeError are UnicodeErrors, hence ValueErrors too.
        raise UnusableURL(f"not a URL ({_short(exc)})") from None
    if url.scheme not in ("http", "https"):
        if not url.scheme:
            raise UnusableURL("it has no scheme: only http:// and https:// URLs are supported")
        raise UnusableURL(f"only http:// and https:// are supported, not {url.scheme}://")
    try:
        host = url.raw_host.decode("ascii")
    except UnicodeDecodeError:  # pragma: no cover - httpx always encodes the host
        raise UnusableURL("its host is not encodable") from None
    if not host:
        raise UnusableURL("it has no host")
    problem = _host_problem(host)
    if problem is not None:
        raise UnusableURL(f"its host {host!r} {problem}")
    port = url.port
    if port is not None and not 1 <= port <= 65535:
        raise UnusableURL(f"its port {port} is not a TCP port (1-65535)")
    return url


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells, if it is an IP literal (brackets and zone allowed)."""
    text = host.strip("[]").replace("%25", "%")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _host_problem(host: str) -> str | None:
    if ip_literal(host) is not None:
        return None
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name's last dot
    if len(name) > _MAX_HOST_LENGTH:
        return f"is longer than {_MAX_HOST_LENGTH} characters"
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            return "is not a valid host name (letters, digits and hyphens between dots)"
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                return "is not a valid international domain name"
    if labels[-1].isdigit():
        # Numbers with dots that are no IPv4 address (`1.2.3.4.5`, `256.1.1.1`).
        return "is neither an IP address nor a host name"
    return None


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."
