"""Every exception of the SDK: the errors users see, all under `ModelsLabError`, and its signals.

```
ModelsLabError
├── ConfigurationError            (also ValueError)
│   └── ForeignFetchURLError
├── InvalidRequestIdError         (also ValueError)
├── ClientClosedError             (also RuntimeError)
├── AccountError                  the account, not the request: stop sending
│   ├── AuthenticationError
│   ├── InsufficientCreditsError  (also APIStatusError)
│   └── PermissionDeniedError     (also APIStatusError)
├── APIConnectionError
│   ├── APITimeoutError
│   ├── CertificateVerificationError
│   └── HostNotFoundError
├── APIStatusError
│   ├── BadRequestError
│   ├── RequestNotFoundError
│   ├── RateLimitError
│   ├── InsufficientCreditsError
│   └── PermissionDeniedError
├── ResponseParseError
├── GenerationFailedError
├── WaitTimeoutError              (also TimeoutError)
├── DownloadError
└── InvalidWebhookError           a webhook delivery refused by the receiver
```

Which answer becomes which error is decided by the table in `_http/_answers.py`. The
signals at the end never reach a user: their catcher raises the user's error above.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from ._results import FetchResult

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AccountError",
    "AuthenticationError",
    "BadRequestError",
    "CertificateVerificationError",
    "ClientClosedError",
    "ConfigurationError",
    "DownloadError",
    "ForeignFetchURLError",
    "GenerationFailedError",
    "HostNotFoundError",
    "InsufficientCreditsError",
    "InvalidRequestIdError",
    "InvalidWebhookError",
    "ModelsLabError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestNotFoundError",
    "ResponseParseError",
    "WaitTimeoutError",
]

_E = TypeVar("_E", bound="ModelsLabError")


class ModelsLabError(Exception):
    """Base class of every error raised by modelslab-fetch.

    Attributes:
        message: What went wrong and, where it helps, what to do about it.
        request_id: The ModelsLab request id concerned (the one you asked about), or None.

    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.message = message
        self.request_id = request_id
        super().__init__(self._text())

    def _text(self) -> str:
        if self.request_id is None:
            return self.message
        return f"request {self.request_id}: {self.message}"

    def for_request(self: _E, request_id: str) -> _E:
        """A copy of this error about `request_id` instead (same class, same response)."""
        other = copy.copy(self)
        other.request_id = request_id
        Exception.__init__(other, other._text())
        other.__traceback__ = None
        return other

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
    """Raised when a client option is unusable, e.g. a plain-http base URL to a remote host.

    Attributes:
        option: The client option at fault (e.g. `"base_url"`, whether it was passed or
            read from `MODELSLAB_BASE_URL`), or None when no one option is.

    """

    def __init__(
        self, message: str, *, request_id: str | None = None, option: str | None = None
    ) -> None:
        self.option = option
        super().__init__(message, request_id=request_id)


class ForeignFetchURLError(ConfigurationError):
    """Raised when a response's `fetch_result` is not below the client's `base_url`.

    Nothing is sent to it: every fetch carries the API key in its body. If the URL is
    right, point the client there (`base_url=`); otherwise pass `endpoint=` to say
    which endpoint of this client to wait on.
    """


class InvalidRequestIdError(ModelsLabError, ValueError):
    """Raised before any request is sent when a request id is empty, blank or malformed."""


class ClientClosedError(ModelsLabError, RuntimeError):
    """Raised when a client is used after `close()`/`aclose()` or its `with` block ended."""


class AccountError(ModelsLabError):
    """Base of the errors about the account rather than the request: key, credits, plan.

    Asking again, or asking about another id, cannot help until the account is fixed, so
    nothing retries them and a batch that meets one stops sending: each of its remaining
    ids gets an outcome carrying the same error.
    """


class APIConnectionError(ModelsLabError):
    """Raised when the server could not be reached or the connection broke, after retries.

    Attributes:
        url: The URL the request went to (never with the key), or None.
        cause: A few words for what failed, e.g. "connection refused", "the connection
            was reset", "no answer in time", a certificate's complaint; or None.

    """

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        url: str | None = None,
        cause: str | None = None,
    ) -> None:
        self.url = url
        self.cause = cause
        super().__init__(message, request_id=request_id)


class APITimeoutError(APIConnectionError):
    """Raised when a request timed out (connect, read, write, pool or the whole exchange)."""


class CertificateVerificationError(APIConnectionError):
    """Raised at once (never retried) when the server's TLS certificate fails verification.

    The message carries the certificate's complaint. Behind a TLS-inspecting proxy, point
    `SSL_CERT_FILE` at your company's CA bundle, or pass your own `http_client`.
    """


class HostNotFoundError(APIConnectionError):
    """Raised at once (never retried) when DNS says the host in `base_url` does not exist.

    A temporary DNS failure is an ordinary, retried `APIConnectionError` instead.
    """


class APIStatusError(ModelsLabError):
    """Raised for an error answer from the API that no more specific class describes.

    That is a non-2xx HTTP status (redirects included), or a request-level error body.
    The subclasses below name the answers ModelsLab documents.

    Attributes:
        status_code: The HTTP status code (200 for an error reported in a 200 body).
        response: The response, redacted (its request carries no body, so no key).
        body: The decoded JSON body, redacted, or None when it was not JSON.
        retry_after: Seconds the server asked us to wait, or None.

    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: object = None,
    ) -> None:
        self.response = response
        self.status_code = response.status_code
        self.retry_after = retry_after
        self.body = body
        super().__init__(message, request_id=request_id)


class BadRequestError(APIStatusError):
    """Raised when the server says the request itself is malformed.

    That is HTTP 400/422, or a 200 body such as `Invalid API Request`, `Model id not
    found` or a validation object (`{"prompt": ["The prompt field is required."]}`).
    """


class RequestNotFoundError(APIStatusError):
    """Raised when the server does not know the id asked about.

    That is HTTP 404, or the 200 body `{"status": "failed", "message": "Request not
    found"}`: a wrong id, one of another account, or one no longer kept. It is not a
    failed generation, and `wait()` raises it at once.
    """


class RateLimitError(APIStatusError):
    """Raised when the server says to slow down, once retries are spent.

    Whatever form it took: HTTP 429 (with `Retry-After`, `X-RateLimit-Reset`, a body
    `retry_after`, or nothing), or the 200 body `"Rate limit exceeded"` of older
    endpoints. `retry_after` holds the wait the server stated, if it stated one.
    `wait()` and `wait_many()` never raise it: they poll through rate limits.
    """


class AuthenticationError(AccountError):
    """Raised when the API key is missing, or the server rejects it.

    That is no key at all (before any request), HTTP 401, or a body such as
    `Invalid Api Key`. Not an `APIStatusError`, since it can come without a response.

    Attributes:
        status_code: The HTTP status of the rejecting response, or None when no request was made.
        response: The rejecting response (redacted), or None.
        body: The decoded JSON body, redacted, or None.

    """

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        response: httpx.Response | None = None,
        body: object = None,
    ) -> None:
        self.response = response
        self.status_code = None if response is None else response.status_code
        self.body = body
        super().__init__(message, request_id=request_id)


class InsufficientCreditsError(APIStatusError, AccountError):
    """Raised when the account has no credits left.

    That is HTTP 402, or an `Insufficient credits` body. Add credits, then ask again:
    the queued jobs are not lost.
    """


class PermissionDeniedError(APIStatusError, AccountError):
    """Raised when the account's plan does not allow the call.

    That is an HTTP 403 that is not about the key, e.g. `This feature requires a premium
    subscription`.
    """


class ResponseParseError(ModelsLabError):
    """Raised when a response is not JSON, or is JSON with no readable `status`.

    A body whose `status` is readable is always a result: odd optional fields never
    make it unreadable.

    Attributes:
        excerpt: The start of what the server sent (redacted), to help diagnose it.
        status_code: The HTTP status of the response.
        problem: What is wrong with the answer in a few words, without advice ("an HTML
            page", "not JSON", "larger than 10 MB", ...), or None.

    """

    def __init__(
        self,
        message: str,
        *,
        excerpt: str,
        status_code: int | None = None,
        request_id: str | None = None,
        problem: str | None = None,
    ) -> None:
        self.excerpt = excerpt
        self.status_code = status_code
        self.problem = problem
        super().__init__(message, request_id=request_id)

    def _text(self) -> str:
        return f"{super()._text()}; response began: {self.excerpt!r}"


class GenerationFailedError(ModelsLabError):
    """Raised by `wait()` when the job really ended with status `failed` or `error`.

    Attributes:
        result: The final fetch result, as the server sent it.

    """

    def __init__(self, result: FetchResult, *, request_id: str | None = None) -> None:
        self.result = result
        reason = result.message or "no reason given by the server"
        super().__init__(
            f"generation ended with status {result.status.value!r}: {reason}",
            request_id=request_id if request_id is not None else (result.id or None),
        )


class WaitTimeoutError(ModelsLabError, TimeoutError):
    """Raised by `wait()` when the job is still unfinished at the deadline.

    Its `__cause__` is the error of the last poll when that poll failed (a
    `RateLimitError` whose pause outlasted the deadline, a network error...).

    Attributes:
        result: The last fetch result seen, or None if no poll was answered with one.
        timeout: The deadline, in seconds, that ran out.

    """

    def __init__(
        self,
        *,
        request_id: str,
        timeout: float,
        result: FetchResult | None,
        error: BaseException | None = None,
    ) -> None:
        self.result = result
        self.timeout = timeout
        if error is not None:
            last = f"the last poll failed: {type(error).__name__}"
        elif result is None:
            last = "no poll completed"
        else:
            last = f"last status {result.status.value!r}"
        super().__init__(
            f"not finished after {timeout:g} s ({last}); "
            "call wait() again with a larger timeout, or fetch() later",
            request_id=request_id,
        )


class DownloadError(ModelsLabError):
    """Raised when an output file cannot be saved: a refused URL, an HTTP error, a size cap.

    A URL is refused when it is unusable (another scheme, a malformed host or port) or
    leads to an address downloads may not reach (loopback, private, link-local...; see
    `allow_private_downloads`). Transient failures are retried first, as for API calls.

    Attributes:
        url: The output URL concerned.
        status_code: The HTTP status the file was answered with, if that was the failure.
        retry_after: Seconds the server asked to wait before asking again, or None.
        refused_address: Why the download was refused for the address it leads to (e.g.
            "its host is 10.0.0.5, a private address"), when that was the failure: only
            `allow_private_downloads=True` lets it through. None for any other failure.

    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        request_id: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        refused_address: str | None = None,
    ) -> None:
        self.url = url
        self.status_code = status_code
        self.retry_after = retry_after
        self.refused_address = refused_address
        super().__init__(message, request_id=request_id)


class InvalidWebhookError(ModelsLabError):
    """Raised by `client.webhooks.receive()` for a delivery it refuses; answer `status_code`.

    ModelsLab signs nothing: the webhook URL itself is the credential. So the message
    says only which HTTP answer to give (404 for a URL this client never made, or a body
    that does not match it; 413 too large; 400 not a delivery; 405 not a POST; 415 an
    encoded body), never which check failed or what was expected: nothing that helps a
    forger.

    Attributes:
        status_code: The HTTP status to answer the sender with.

    """

    def __init__(self, message: str, *, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message)


# --- Signals between the layers: caught inside the SDK, never seen by a user ------------


class _Signal(Exception):
    """A signal carrying `detail`: the words its catcher puts into the user's error."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class UnusableURL(ValueError):
    """Why a URL cannot be used at all; callers turn it into their own typed error."""


class DownloadRefused(_Signal):
    """A download the address policy refuses; `detail` says why (the caller adds advice)."""


class DecodingError(Exception):
    """A body is not what its `Content-Encoding` says, or uses an encoding we cannot undo."""


class DecodedTooLarge(Exception):
    """A decoded body grew past `limit`; `head` is its first bytes."""

    def __init__(self, limit: int, head: bytes) -> None:
        self.limit = limit
        self.head = head
        super().__init__(f"decoded body larger than {limit} bytes")


class BackendTimeout(_Signal):
    """An HTTP backend's request timed out; `detail` says how."""


class BackendConnectionError(_Signal):
    """An HTTP backend could not reach the server or lost the connection.

    `cause` says it in a few words ("connection refused"), for `APIConnectionError.cause`.
    """

    def __init__(self, detail: str, cause: str = "the connection failed") -> None:
        super().__init__(detail)
        self.cause = cause


class BackendCertificateError(BackendConnectionError):
    """The server's TLS certificate failed verification: retrying cannot help."""


class BackendUnknownHost(BackendConnectionError):
    """DNS says the host name does not exist (not a temporary resolver failure)."""


class BackendResponseTooLarge(Exception):
    """A response body exceeded the most a backend reads; `head` is its start."""

    def __init__(self, status_code: int, head: bytes) -> None:
        self.status_code = status_code
        self.head = head
        super().__init__(f"HTTP {status_code} response body larger than the SDK reads")
