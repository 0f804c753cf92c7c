"""What an error means to a person at the command line, and what to do next."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .._config import DEFAULT_BASE_URL
from .._errors import (
    AccountError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    CertificateVerificationError,
    HostNotFoundError,
    InsufficientCreditsError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
    WaitTimeoutError,
)

__all__ = [
    "account_stop_message",
    "counted",
    "in_cli_terms",
    "in_plain_words",
    "unknown_ids_hint",
]


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1 file`, `2 files`: a count and its noun, agreeing."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def in_plain_words(error: BaseException) -> str:  # noqa: PLR0911 - one answer per error class
    """One line about `error` in the command's terms (no Python, no parameter names)."""
    if isinstance(error, AuthenticationError):
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
    if isinstance(error, CertificateVerificationError):
        return (
            "cannot verify the server's TLS certificate: if your network inspects TLS, set "
            f"SSL_CERT_FILE to your company's CA bundle ({error.message})"
        )
    if isinstance(error, HostNotFoundError):
        return "the server's host name does not exist: check --base-url or MODELSLAB_BASE_URL"
    if isinstance(error, APIConnectionError):
        return _unreachable(error)
    if isinstance(error, WaitTimeoutError):
        last = "no answer yet" if error.result is None else f"still {error.result.status.value}"
        return (
            f"not finished within --timeout {error.timeout:g} s ({last}): run the same "
            "command again later (with --output FILE and --resume, only unfinished ids are "
            "asked again), or give a larger --timeout"
        )
    if isinstance(error, ModelsLabError):
        return in_cli_terms(error.message)
    return in_cli_terms(str(error))


# The library speaks to programmers (`base_url=`, `wait()`, `max_concurrency`); at the
# command line the same advice is about options and commands.
_LIBRARY_TERMS = (
    ("check api_key= or MODELSLAB_API_KEY", "check MODELSLAB_API_KEY (or --api-key-file)"),
    ("pass api_key=... to the client or set", "set"),
    (
        "call wait() again with a larger timeout, or fetch() later",
        "run the same command again later (with --output FILE and --resume, only "
        "unfinished ids are asked again), or give a larger --timeout",
    ),
    (
        "lower max_concurrency or max_requests_per_second, or try again later",
        "try again later, or wait on fewer ids at once (`wait --concurrency N`)",
    ),
    (", or pass your own http_client", ""),
    (
        "create the client with that base_url; else pass endpoint=",
        "point --base-url (or MODELSLAB_BASE_URL) there; else give --endpoint NAME",
    ),
    ("pass endpoint= to choose one", "give --endpoint NAME to choose one"),
    (
        "wait on the id you were given with client.<endpoint>.wait(id)",
        "give the id itself instead: modelslab-fetch wait ID --endpoint NAME",
    ),
    ("this client's base_url", "--base-url"),
    ("base_url / the endpoint", "--base-url / the endpoint"),
    ("base_url", "--base-url"),
    ("Downloader(file_time_limit=...)", "the download time limit"),
    (
        "create the client with allow_private_downloads=True",
        "run the command with --allow-private-downloads",
    ),
)
# The endpoint names are listed by --help; one line of advice need not hold them all.
_ENDPOINT_LIST = re.compile(r"pass endpoint= \(one of: [^)]*\)")


def in_cli_terms(text: str) -> str:
    """`text` with the library's parameter names replaced by the command's options."""
    text = _ENDPOINT_LIST.sub("give --endpoint NAME (see --help)", text)
    for library, command in _LIBRARY_TERMS:
        text = text.replace(library, command)
    return text


_TALK = re.compile(r"could not talk to (\S+) \((.*)\)$", re.DOTALL)
_CAUSES = (
    ("refused", "connection refused"),
    ("connect call failed", "connection refused"),
    ("reset", "the connection was reset"),
    ("disconnected", "the server closed the connection"),
    ("closed", "the server closed the connection"),
    ("unreachable", "network unreachable"),
)


def _unreachable(error: APIConnectionError) -> str:
    """`cannot reach HOST:PORT: connection refused`, from the library's longer message."""
    found = _TALK.search(error.message)
    if isinstance(error, APITimeoutError):
        cause = "no answer in time"
    elif found is None:
        return in_cli_terms(error.message)
    else:
        detail = found.group(2).lower()
        cause = next((words for key, words in _CAUSES if key in detail), "the connection failed")
    where = "the server"
    if found is not None:
        try:
            parts = urlsplit(found.group(1))
            where = parts.netloc.rpartition("@")[2] or where
        except ValueError:
            pass
    return f"cannot reach {where}: {cause}"


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
