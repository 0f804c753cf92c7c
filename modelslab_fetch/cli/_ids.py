"""Where the command reads request ids from: arguments, a file, or standard input."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import anyio.to_thread

from .. import normalize_request_id
from ._idset import IdSet
from ._lines import physical_lines
from ._usage import UsageError, os_words

__all__ = ["LINES_PER_READ", "IdsToRead", "check_ids_file", "numbered_lines", "read_ids"]

LINES_PER_READ = 1000


@dataclass
class IdsToRead:
    """The ids a command works on, read lazily, and what is known of them beforehand."""

    ids: Iterable[str] | AsyncIterator[str]
    """The ids as given (repeats and ids finished before included: the run skips them)."""
    total: int | None
    """How many the run waits on, when known: each id once, less those finished before."""
    counted: IdSet | None = None
    """For a file: its ids (each once, those finished before left out), counted first."""


def read_ids(
    arguments: list[str],
    ids_file: str | None,
    known: Container[str] = (),
    *,
    option: str = "--ids-file",
) -> IdsToRead:
    """The ids to work on, read lazily, and how many there are when that is known.

    A lone `-` as the arguments, or `--ids-file -`, reads standard input; blank lines
    and lines starting with `#` are skipped. A file is read as UTF-8, with or without a
    byte-order mark; its count leaves out repeats and the ids in `known` (skipped by
    `--resume`). Raises `UsageError` for `-` among other ids or an unreadable file.
    """
    if ids_file is not None and ids_file != "-":
        lines, others, counted = check_ids_file(Path(ids_file), known, option=option)
        if lines == 0:
            raise UsageError(f"{option} {ids_file} holds nothing to wait on (one a line)")
        return IdsToRead(_lines(ids_file, option), len(counted) + others, counted)
    if ids_file == "-" or arguments == ["-"]:
        return IdsToRead(_lines("-"), None)
    if "-" in arguments:
        raise UsageError("give `-` (standard input) alone, not among other ids")
    return IdsToRead(list(arguments), len(arguments))


def check_ids_file(
    path: Path, known: Container[str] = (), *, option: str = "--ids-file"
) -> tuple[int, int, IdSet]:
    """Read `path` once, without keeping its lines: what the run will have to do.

    Returns how many entries it holds, how many of them are not ids at all (each gets
    a failed outcome), and its ids not in `known`, each once. Lines are counted as the
    run reads them (ended by LF, CRLF or CR), so the total the progress view shows is
    what the run does. Raises `UsageError`, naming the file (and the line), if it cannot
    be read or is not UTF-8 text: before any request is sent.
    """
    lines = others = 0
    counted = IdSet()
    try:
        with path.open("rb") as file:
            for _number, text in _ids_in(file, f"{option} {path}"):
                lines += 1
                try:
                    key = normalize_request_id(text)
                except ValueError:  # not an id at all: the batch reports it (once more
                    others += text not in known  # only if no resumed line has already)
                    continue
                if key not in known:
                    counted.add(key)
    except IsADirectoryError:
        raise UsageError(f"{option} {path} is a folder; give a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {option} {os_words(exc, path)}") from None
    return lines, others, counted.freeze()


def _ids_in(file: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """Each line that holds an id, with its number from 1; blank lines, `#` comments skipped.

    `UsageError` names the first line that is not UTF-8 text (or holds a NUL byte).
    """
    for number, raw in enumerate(physical_lines(file), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = "\x00"
        if "\x00" in line:  # undecodable, or binary data that happens to decode
            raise UsageError(
                f"{name} is not UTF-8 text (line {number}); save it as UTF-8, one entry a line"
            )
        text = _id_text(line)
        if text is not None:
            yield number, text


def _id_text(line: str) -> str | None:
    # A byte-order mark is allowed where a file starts (and, harmlessly, on any line).
    text = line.strip().lstrip("\ufeff").strip()
    return text if text and not text.startswith("#") else None


def numbered_lines(source: str, option: str = "--ids-file") -> AsyncIterator[tuple[int, str]]:
    """The entries of a file (or `-`, standard input) with their line numbers, lazily."""
    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # stdin replaced by a text stream (tests, embedding)
            return _numbered(lambda: _text_ids(sys.stdin), close=None)
        # As for a file: UTF-8, a byte-order mark allowed, whatever the locale says.
        return _numbered(lambda: _ids_in(buffer, "standard input"), close=None)

    def opened() -> Iterator[tuple[int, str]]:
        # Opened when the first entry is wanted: a run stopped before that holds no
        # file. (Its readability was checked by `check_ids_file`, before any request.)
        try:
            file = Path(source).open("rb")  # noqa: SIM115 - closed by _numbered
        except OSError as exc:
            raise UsageError(f"cannot read {option} {os_words(exc, source)}") from None
        files.append(file)
        return _ids_in(file, f"{option} {source}")

    files: list[BinaryIO] = []
    return _numbered(opened, close=files)


def _text_ids(stream: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, start=1):
        text = _id_text(line)
        if text is not None:
            yield number, text


def _lines(source: str, option: str = "--ids-file") -> AsyncIterator[str]:
    async def texts() -> AsyncIterator[str]:
        async for _number, text in numbered_lines(source, option):
            yield text

    return texts()


async def _numbered(
    start: Callable[[], Iterator[tuple[int, str]]], *, close: list[BinaryIO] | None
) -> AsyncIterator[tuple[int, str]]:
    # Read in a worker thread, some lines at a time: a slow pipe (`producer | modelslab-
    # fetch wait -`) must not freeze the event loop, and its polls and deadlines with it.
    entries = start()
    try:
        while taken := await anyio.to_thread.run_sync(_take, entries):
            for entry in taken:
                yield entry
    finally:
        for file in close or ():
            file.close()


def _take(entries: Iterator[tuple[int, str]]) -> list[tuple[int, str]]:
    return list(itertools.islice(entries, LINES_PER_READ))
