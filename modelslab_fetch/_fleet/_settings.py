"""`redis_url=` and `redis_prefix=`: checked once, at client construction."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .._errors import ConfigurationError

__all__ = [
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_REDIS_TIMEOUT",
    "REDIS_PREFIX_ENV",
    "REDIS_URL_ENV",
    "FleetSettings",
    "resolve_fleet",
]

REDIS_URL_ENV = "MODELSLAB_REDIS_URL"
REDIS_PREFIX_ENV = "MODELSLAB_REDIS_PREFIX"
DEFAULT_REDIS_PREFIX = "modelslab_fetch:"
DEFAULT_REDIS_TIMEOUT = 1.0
"""Seconds a Redis command may take before Redis counts as down (`socket_timeout` in the
URL's query changes it). A command takes well under a millisecond on a healthy server:
one second tells a frozen or unreachable server from a busy one, and bounds what a fault
can add to a wait before the client stops asking Redis."""

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, repr=False)
class FleetSettings:
    """Where the fleet's Redis is, its key prefix, and how long a command may take."""

    url: str
    prefix: str
    timeout: float

    @property
    def where(self) -> str:
        """The server as it may be shown: scheme, host and port, never a password."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}"

    def __repr__(self) -> str:
        return f"FleetSettings({self.where!r}, prefix={self.prefix!r})"


def resolve_fleet(redis_url: str | None, redis_prefix: str | None) -> FleetSettings | None:
    """The fleet settings from the options or `MODELSLAB_REDIS_URL`/`_PREFIX`; None: none."""
    url = redis_url if redis_url is not None else os.environ.get(REDIS_URL_ENV) or None
    if url is None:
        if redis_prefix is not None:
            raise ConfigurationError(
                "redis_prefix is set but redis_url is not: pass redis_url=... (or set "
                f"{REDIS_URL_ENV}) to share work through Redis, or leave redis_prefix out"
            )
        return None
    if not isinstance(url, str):
        raise ConfigurationError(f"redis_url must be a str; got {type(url).__name__}")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        shown = f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else "a URL"
        raise ConfigurationError(
            f"redis_url must be a redis://, rediss:// or unix:// URL such as "
            f"'redis://localhost:6379/0'; got {shown!r}"
        )
    prefix = redis_prefix if redis_prefix is not None else os.environ.get(REDIS_PREFIX_ENV)
    if prefix is None:
        prefix = DEFAULT_REDIS_PREFIX
    if not isinstance(prefix, str) or not prefix or len(prefix) > 100:
        raise ConfigurationError(
            "redis_prefix must be a non-empty str of at most 100 characters, such as "
            f"{DEFAULT_REDIS_PREFIX!r}; clients share work only with clients of the same prefix"
        )
    if any(char.isspace() for char in prefix):
        raise ConfigurationError(f"redis_prefix cannot contain spaces: {prefix!r}")
    missing = [name for name in ("redis", "limits") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"redis_url needs the {' and '.join(missing)} package(s): "
            "pip install 'modelslab-fetch[redis]'"
        )
    return FleetSettings(url=url, prefix=prefix, timeout=_timeout_in(parts.query))


def _timeout_in(query: str) -> float:
    given = parse_qs(query).get("socket_timeout")
    if not given:
        return DEFAULT_REDIS_TIMEOUT
    try:
        value = float(given[-1])
    except ValueError:
        raise ConfigurationError(
            f"redis_url's socket_timeout must be seconds, such as 0.5; got {given[-1]!r}"
        ) from None
    if not 0 < value < 60:
        raise ConfigurationError(
            f"redis_url's socket_timeout must be above 0 and below 60 seconds; got {value}"
        )
    return value
