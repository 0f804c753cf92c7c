"""The settings both clients show (`client.base_url`, `client.timeout`, ...), read once."""

from __future__ import annotations

import httpx

from .._config import ClientConfig

__all__ = ["ClientSettings"]


class ClientSettings:
    """Read-only views of a client's resolved options, the same on both clients."""

    def _settings(self) -> ClientConfig:
        raise NotImplementedError  # each client says where its resolved options are

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._settings().base_url

    @property
    def timeout(self) -> httpx.Timeout:
        """The per-attempt timeout."""
        return self._settings().timeout

    @property
    def max_retries(self) -> int:
        """How many times a transient failure is retried."""
        return self._settings().max_retries

    @property
    def max_concurrency(self) -> int:
        """The most HTTP requests in flight at once, client-wide."""
        return self._settings().max_concurrency

    @property
    def max_requests_per_second(self) -> float | None:
        """The client-wide cap on the request rate, if any."""
        return self._settings().max_requests_per_second

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"
