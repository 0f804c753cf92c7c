"""One flat hierarchy of every error this SDK raises, all under `ModelsLabError`.

```
ModelsLabError
├── ConfigurationError       (also ValueError)
├── InvalidRequestIdError    (also ValueError)
├── ClientClosedError        (also RuntimeError)
├── AuthenticationError
├── APIConnectionError
│   └── APITimeoutError
├── APIStatusError
│   └── RateLimitError
├── ResponseParseError
├── GenerationFailedError
├── WaitTimeoutError         (also TimeoutError)
└── DownloadError
```

No error text ever contains the API key: messages are built from request ids, status
codes and short, redacted excerpts of what the server sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._models import FetchResult

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "DownloadError",
    "GenerationFailedError",
    "InvalidRequestIdError",
    "ModelsLabError",
    "RateLimitError",
    "ResponseParseError",
    "WaitTimeoutError",
]


class ModelsLabError(Exception):
    """Base class of every error raised by modelslab-fetch.

    Attributes:
        message: What went wrong and, where it helps, what to do about it.
        request_id: The ModelsLab request id concerned, or None when there is none.

    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.message = message
        self.request_id = request_id
        super().__init__(self._text())

    def _text(self) -> str:
        if self.request_id is None:
            return self.message
        return f"request {self.request_id}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat Exception's default pickling; errors cross
        # process and thread boundaries in batch jobs, so keep them picklable.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[ModelsLabError], state: dict[str, Any]) -> ModelsLabError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._text())
    return error


class ConfigurationError(ModelsLabError, ValueError):
    """Raised when a client option is unusable, e.g. a plain-http base URL to a remote host."""


class InvalidRequestIdError(ModelsLabError, ValueError):
    """Raised before any request is sent when a request id is empty, blank or malformed."""


class ClientClosedError(ModelsLabError, RuntimeError):
    """Raised when a client is used after `close()`/`aclose()` or its `with` block ended."""


class AuthenticationError(ModelsLabError):
    """Raised when the API key is missing, or the server rejects it (401/403 or an error body).

    Attributes:
        status_code: The HTTP status of the rejecting response, or None when no request was made.
        response: The rejecting response (its request carries no body), or None.

    """

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        self.response = response
        self.status_code = None if response is None else response.status_code
        super().__init__(message, request_id=request_id)


class APIConnectionError(ModelsLabError):
    """Raised when the server could not be reached or the connection broke, after retries."""


class APITimeoutError(APIConnectionError):
    """Raised when a request timed out (connect, read, write or pool), after retries."""


class APIStatusError(ModelsLabError):
    """Raised for a non-2xx HTTP response that is not an authentication or rate-limit error.

    Attributes:
        status_code: The HTTP status code.
        response: The response (its request carries no body, so no key).
        retry_after: Seconds the server asked us to wait (`Retry-After`), or None.

    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.response = response
        self.status_code = response.status_code
        self.retry_after = retry_after
        super().__init__(message, request_id=request_id)


class RateLimitError(APIStatusError):
    """Raised on HTTP 429 once retries are used up, or when `Retry-After` asks for too long."""


class ResponseParseError(ModelsLabError):
    """Raised when a response is not JSON or not the shape of a fetch result.

    Attributes:
        excerpt: The start of what the server sent (redacted), to help diagnose it.
        status_code: The HTTP status of the response.

    """

    def __init__(
        self,
        message: str,
        *,
        excerpt: str,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.excerpt = excerpt
        self.status_code = status_code
        super().__init__(message, request_id=request_id)

    def _text(self) -> str:
        return f"{super()._text()}; response began: {self.excerpt!r}"


class GenerationFailedError(ModelsLabError):
    """Raised by `wait()` when the job ended with status `failed` or `error`.

    Attributes:
        result: The final fetch result, as the server sent it.

    """

    def __init__(self, result: FetchResult) -> None:
        self.result = result
        reason = result.message or "no reason given by the server"
        super().__init__(
            f"generation ended with status {result.status.value!r}: {reason}",
            request_id=result.id,
        )


class WaitTimeoutError(ModelsLabError, TimeoutError):
    """Raised by `wait()` when the job is still unfinished at the deadline.

    Attributes:
        result: The last fetch result seen, or None if no poll completed.
        timeout: The deadline, in seconds, that ran out.

    """

    def __init__(self, *, request_id: str, timeout: float, result: FetchResult | None) -> None:
        self.result = result
        self.timeout = timeout
        last = "no poll completed" if result is None else f"last status {result.status.value!r}"
        super().__init__(
            f"not finished after {timeout:g} s ({last}); "
            "call wait() again with a larger timeout, or fetch() later",
            request_id=request_id,
        )


class DownloadError(ModelsLabError):
    """Raised when an output image cannot be saved: a refused URL, an HTTP error, a size cap.

    Attributes:
        url: The image URL concerned.

    """

    def __init__(self, message: str, *, url: str, request_id: str | None = None) -> None:
        self.url = url
        super().__init__(message, request_id=request_id)
