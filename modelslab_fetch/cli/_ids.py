"""Where the command reads request ids from: arguments, a file, or standard input."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TextIO

import anyio.to_thread

__all__ = ["LINES_PER_READ", "read_ids"]

LINES_PER_READ = 1000


def read_ids(
    arguments: list[str], ids_file: str | None
) -> tuple[Iterable[str] | AsyncIterator[str], int | None]:
    """The ids to work on, read lazily, and how many there are when that is known.

    A lone `-` as the arguments, or `--ids-file -`, reads standard input; blank lines
    and lines starting with `#` are skipped. Raises `ValueError` for `-` among other ids.
    """
    if ids_file is not None:
        return _lines(ids_file), None
    if arguments == ["-"]:
        return _lines("-"), None
    if "-" in arguments:
        raise ValueError("give `-` (standard input) alone, not among other ids")
    return list(arguments), len(arguments)


def _lines(source: str) -> AsyncIterator[str]:
    # Opened now, read later: a missing file is reported before any work starts.
    stream = sys.stdin if source == "-" else Path(source).open(encoding="utf-8")  # noqa: SIM115
    return _stripped(stream)


async def _stripped(stream: TextIO) -> AsyncIterator[str]:
    # Read in a worker thread, some lines at a time: a slow pipe (`producer | modelslab-
    # fetch wait -`) must not freeze the event loop, and its polls and deadlines with it.
    try:
        while lines := await anyio.to_thread.run_sync(_take, stream):
            for line in lines:
                text = line.strip()
                if text and not text.startswith("#"):
                    yield text
    finally:
        if stream is not sys.stdin:
            stream.close()


def _take(stream: TextIO) -> list[str]:
    return list(itertools.islice(stream, LINES_PER_READ))
