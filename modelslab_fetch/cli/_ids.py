"""Where the command reads request ids from: arguments, a file, or standard input."""

from __future__ import annotations

import codecs
import io
import itertools
import sys
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from pathlib import Path
from typing import TextIO

import anyio.to_thread

from ._usage import UsageError, os_words

__all__ = ["LINES_PER_READ", "check_ids_file", "read_ids"]

LINES_PER_READ = 1000
_CHUNK = 1 << 16


def read_ids(
    arguments: list[str],
    ids_file: str | None,
    known: Collection[str] = (),
    *,
    option: str = "--ids-file",
) -> tuple[Iterable[str] | AsyncIterator[str], int | None]:
    """The ids to work on, read lazily, and how many there are when that is known.

    A lone `-` as the arguments, or `--ids-file -`, reads standard input; blank lines
    and lines starting with `#` are skipped. A file is read as UTF-8, with or without a
    byte-order mark; its count leaves out the ids in `known` (skipped by `--resume`).
    Raises `UsageError` for `-` among other ids or an unreadable file.
    """
    if ids_file is not None and ids_file != "-":
        total, already = check_ids_file(Path(ids_file), known, option=option)
        if total == 0:
            raise UsageError(f"{option} {ids_file} holds nothing to wait on (one a line)")
        return _lines(ids_file, option), total - already
    if ids_file == "-" or arguments == ["-"]:
        return _lines("-"), None
    if "-" in arguments:
        raise UsageError("give `-` (standard input) alone, not among other ids")
    return list(arguments), len(arguments)


def check_ids_file(
    path: Path, known: Collection[str] = (), *, option: str = "--ids-file"
) -> tuple[int, int]:
    """Read `path` once, without keeping it: how many ids it holds, and how many are in `known`.

    Raises `UsageError`, naming the file (and the line), if it cannot be read or is not
    UTF-8 text: before any request is sent.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    counts = [0, 0]  # ids, and ids in `known`
    line_number = 0
    tail = ""
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                *whole, tail = (tail + decoder.decode(chunk)).split("\n")
                for line in whole:
                    line_number += 1
                    _tally(line, known, counts)
            tail += decoder.decode(b"", final=True)
            _tally(tail, known, counts)
    except IsADirectoryError:
        raise UsageError(f"{option} {path} is a folder; give a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {option} {os_words(exc, path)}") from None
    except ValueError:  # undecodable bytes, or NULs: not a text file
        raise UsageError(
            f"{option} {path} is not UTF-8 text (line {line_number + 1}); "
            "save it as UTF-8, one entry a line"
        ) from None
    return counts[0], counts[1]


def _tally(line: str, known: Collection[str], counts: list[int]) -> None:
    text = line.strip()
    if not text or text.startswith("#"):
        return
    if "\x00" in text:  # binary data that happens to decode
        raise ValueError("a NUL byte")
    counts[0] += 1
    counts[1] += text in known


def _lines(source: str, option: str = "--ids-file") -> AsyncIterator[str]:
    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # stdin replaced by a text stream (tests, embedding)
            return _stripped(lambda: sys.stdin, "standard input", close=False)
        # As for a file: UTF-8, a byte-order mark allowed, whatever the locale says.
        return _stripped(
            lambda: io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="strict"),
            "standard input",
            close=False,
        )

    def opened() -> TextIO:
        # Opened when the first id is wanted: a run stopped before that holds no file.
        # (Its readability was checked by `check_ids_file`, before any request.)
        try:
            return Path(source).open(encoding="utf-8-sig")
        except OSError as exc:
            raise UsageError(f"cannot read {option} {os_words(exc, source)}") from None

    return _stripped(opened, source, close=True)


async def _stripped(
    open_stream: Callable[[], TextIO], name: str, *, close: bool
) -> AsyncIterator[str]:
    # Read in a worker thread, some lines at a time: a slow pipe (`producer | modelslab-
    # fetch wait -`) must not freeze the event loop, and its polls and deadlines with it.
    stream = open_stream()
    try:
        while lines := await anyio.to_thread.run_sync(_take, stream, name):
            for line in lines:
                text = line.strip().lstrip("\ufeff")
                if text and not text.startswith("#"):
                    yield text
    finally:
        if close:
            stream.close()


def _take(stream: TextIO, name: str) -> list[str]:
    try:
        return list(itertools.islice(stream, LINES_PER_READ))
    except UnicodeDecodeError:
        raise UsageError(
            f"{name} is not UTF-8 text; give one id per line, saved as UTF-8"
        ) from None
