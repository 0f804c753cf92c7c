"""Request ids: checked before anything is sent, and read lazily from files and iterables."""

from __future__ import annotations

import inspect
import io
import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TypeVar

import anyio

from ._errors import InvalidRequestIdError

__all__ = ["RequestId", "ids_in_file", "is_file", "lazily", "normalize_request_id"]

T = TypeVar("T")
U = TypeVar("U")

RequestId = str | int
"""A request id as callers hold it; ModelsLab sends ints in some bodies, strings in others."""

MAX_REQUEST_ID_LENGTH = 256

# Characters that would change what URL a path id names, or how a proxy reads it.
_URL_SYNTAX = frozenset("/\\?#%")
# What ModelsLab ids look like (digits, UUIDs): accepted without the slow checks below.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")


def normalize_request_id(value: object) -> str:
    r"""Return `value` as the canonical string id, or raise `InvalidRequestIdError`.

    Surrounding whitespace is stripped; whitespace inside, control characters and URL
    syntax (`/ \ ? # %`) are rejected, so an id can never address another endpoint.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequestIdError(
            f"a request id must be a str or an int, got {type(value).__name__}; "
            "pass the `id` ModelsLab returned when the job was queued"
        )
    if isinstance(value, str) and _PLAIN_ID.fullmatch(value):
        return value
    if isinstance(value, int):
        if value < 0:
            raise InvalidRequestIdError(f"a request id cannot be negative, got {value}")
        if value.bit_length() > 3 * MAX_REQUEST_ID_LENGTH:  # before str(), which has limits
            raise InvalidRequestIdError(
                f"a request id is at most {MAX_REQUEST_ID_LENGTH} characters; this int is longer"
            )
        return str(value)
    text = value.strip()
    if not text:
        raise InvalidRequestIdError(
            "a request id cannot be empty or blank; "
            "pass the `id` ModelsLab returned when the job was queued"
        )
    if len(text) > MAX_REQUEST_ID_LENGTH:
        raise InvalidRequestIdError(
            f"a request id is at most {MAX_REQUEST_ID_LENGTH} characters, got {len(text)}"
        )
    for char in text:
        if char.isspace():
            raise InvalidRequestIdError(
                f"a request id cannot contain whitespace: {text!r}; pass one id per call"
            )
        if unicodedata.category(char).startswith("C"):
            raise InvalidRequestIdError(f"a request id cannot contain control characters: {text!r}")
        if char in _URL_SYNTAX:
            raise InvalidRequestIdError(
                f"a request id cannot contain {char!r}: {text!r}; "
                "pass the bare id, not a URL or a path"
            )
    if text in {".", ".."}:
        raise InvalidRequestIdError(f"{text!r} is not a request id")
    return text


def is_file(ids: object) -> bool:
    """Whether `ids` is a file object (`open()`, `sys.stdin`, anyio's `AsyncFile`): lines of ids."""
    return isinstance(ids, io.IOBase | anyio.AsyncFile)


def ids_in_file(
    file: Iterable[object] | AsyncIterable[object],
) -> Iterator[str] | AsyncIterator[str]:
    """The ids a file object holds, one a line, read lazily; blank and `#` lines skipped."""
    return lazily(file, _id_of_line)


def lazily(
    items: Iterable[T] | AsyncIterable[T], read: Callable[[int, T], U | None]
) -> Iterator[U] | AsyncIterator[U]:
    """`read(position, item)` of each item as it is asked for, Nones left out.

    A generator given is closed when the reading ends.
    """
    if isinstance(items, AsyncIterable):
        return _read_async(aiter(items), read)
    return _read(iter(items), read)


def _read(source: Iterator[T], read: Callable[[int, T], U | None]) -> Iterator[U]:
    try:
        for position, item in enumerate(source):
            if (found := read(position, item)) is not None:
                yield found
    finally:
        if inspect.isgenerator(source):
            source.close()


async def _read_async(
    source: AsyncIterator[T], read: Callable[[int, T], U | None]
) -> AsyncIterator[U]:
    position = 0
    try:
        async for item in source:
            if (found := read(position, item)) is not None:
                yield found
            position += 1
    finally:
        if inspect.isasyncgen(source):
            await source.aclose()


def _id_of_line(position: int, line: object) -> str | None:
    if isinstance(line, bytes | bytearray):
        # Undecodable bytes become escapes no id may contain: a Failure, not a stop.
        line = bytes(line).decode("utf-8", "backslashreplace")
    text = str(line)
    if position == 0:
        text = text.removeprefix("\ufeff")  # a byte-order mark, kept by open() as text
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    return text
