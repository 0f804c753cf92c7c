"""What an error means to a person at the command line, and what to do next."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from .. import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    AccountError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    CertificateVerificationError,
    DownloadError,
    HostNotFoundError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
    ResponseParseError,
    WaitTimeoutError,
)

__all__ = [
    "account_stop_message",
    "counted",
    "has_own_words",
    "in_plain_words",
    "unknown_ids_hint",
]


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1 file`, `2 files`: a count and its noun, agreeing."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def in_plain_words(error: BaseException) -> str:
    """One line about `error` in the command's terms (no Python, no parameter names).

    Built from the error's class and typed fields where the command knows better than
    the library's message, which speaks to programmers (`base_url=`, `wait()`); the
    message as it is otherwise.
    """
    words = _own_words(error)
    if words is not None:
        return words
    return error.message if isinstance(error, ModelsLabError) else str(error)


def has_own_words(error: BaseException) -> bool:
    """Whether the command words `error` itself, rather than showing its message."""
    return _own_words(error) is not None


def _own_words(error: BaseException) -> str | None:  # noqa: PLR0911 - one answer per class
    if isinstance(error, AuthenticationError):
        if error.status_code is None:  # refused before any request: there was no key
            return f"no API key: set {API_KEY_ENV} (or pass --api-key-file FILE)"
        return "ModelsLab rejected the API key: check MODELSLAB_API_KEY (or --api-key-file)"
    if isinstance(error, InsufficientCreditsError):
        return "no credits left on this ModelsLab account: add credits in your ModelsLab dashboard"
    if isinstance(error, PermissionDeniedError):
        return (
            "this ModelsLab account's plan does not allow this call: upgrade the plan in "
            "your ModelsLab dashboard"
        )
    if isinstance(error, RateLimitError):
        wait = "" if error.retry_after is None else f" (it asked to wait {error.retry_after:g} s)"
        return (
            f"ModelsLab is rate limiting this account{wait}: try again later, or wait on "
            "fewer ids at once (`wait --concurrency N`)"
        )
    if isinstance(error, RequestNotFoundError):
        return (
            "ModelsLab does not know this id: check it is the id returned when the job was "
            "queued with this key (ids are not kept forever)"
        )
    if isinstance(error, APIConnectionError):
        return _unreachable(error)
    if isinstance(error, WaitTimeoutError):
        last = "no answer yet" if error.result is None else f"still {error.result.status.value}"
        return (
            f"not finished within --timeout {error.timeout:g} s ({last}): run the same "
            "command again later (with --output FILE and --resume, only unfinished ids are "
            "asked again), or give a larger --timeout"
        )
    if isinstance(error, ResponseParseError) and error.problem is not None:
        return (
            f"the server's answer (HTTP {error.status_code}) is {error.problem}, not a "
            f"ModelsLab fetch answer (it began: {error.excerpt!r}): check that --base-url "
            f"(or MODELSLAB_BASE_URL) is ModelsLab's API root, {DEFAULT_BASE_URL}"
        )
    if isinstance(error, APIStatusError) and 300 <= error.status_code < 400:
        where = error.response.headers.get("location", "an address it did not give")
        return (
            f"the server redirected to {where!r}, which is not followed (every request "
            "carries the API key): point --base-url (or MODELSLAB_BASE_URL) at the final "
            "address"
        )
    if isinstance(error, DownloadError) and error.refused_address is not None:
        return (
            f"refusing to download {error.url!r}: {error.refused_address}; downloads reach "
            "only public addresses unless you trust that server and run the command with "
            "--allow-private-downloads"
        )
    return None


def _unreachable(error: APIConnectionError) -> str:
    """`cannot reach HOST:PORT: connection refused`, from the error's `url` and `cause`."""
    if isinstance(error, CertificateVerificationError):
        complaint = f" ({error.cause})" if error.cause else ""
        return (
            "cannot verify the server's TLS certificate: if your network inspects TLS, set "
            f"SSL_CERT_FILE to your company's CA bundle{complaint}"
        )
    if isinstance(error, HostNotFoundError):
        return "the server's host name does not exist: check --base-url or MODELSLAB_BASE_URL"
    where = "the server"
    with contextlib.suppress(ValueError):  # an error made by hand, with a broken URL
        # The netloc, without a user name (the client refuses those anyway).
        where = urlsplit(error.url or "").netloc.rpartition("@")[2] or where
    return f"cannot reach {where}: {error.cause or 'the connection failed'}"


def account_stop_message(error: AccountError, *, results: str | None) -> str:
    """Why a run stopped early, and how to pick it up again once the account is fixed."""
    again = (
        f"then run the same command with --resume (results so far are in {results})"
        if results
        else "then run the same command again"
    )
    return f"stopped: {in_plain_words(error)}; {again}. No further requests were sent."


def unknown_ids_hint(base_url: str, unknown: int, asked: int) -> str | None:
    """A hint when every id was unknown and the API root looks wrong; None otherwise.

    ModelsLab's API root ends in `/api` (so does the simulator's): without it every
    fetch lands on a path that is no endpoint, and each id reads as unknown. Said once,
    after the run, rather than as many times as there are ids.
    """
    if unknown == 0 or unknown != asked:
        return None
    try:
        path = urlsplit(base_url).path.rstrip("/")
    except ValueError:  # pragma: no cover - the client checked the URL already
        return None
    if path.endswith("/api"):
        return None
    which = "the id" if asked == 1 else f"any of the {counted(asked, 'id')}"
    return (
        f"hint: the server at {base_url} did not know {which}, and that URL does not end "
        f"in /api: if the ids are right, the URL may be wrong; ModelsLab's API root is "
        f"{DEFAULT_BASE_URL} (a simulator's ends in /api too): check --base-url or "
        "MODELSLAB_BASE_URL"
    )
