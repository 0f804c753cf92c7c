"""Where the command reads request ids from: arguments, a file, or standard input."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["read_ids"]


def read_ids(arguments: list[str], ids_file: str | None) -> tuple[Iterable[str], int | None]:
    """The ids to work on, read lazily, and how many there are when that is known.

    `-` among the arguments, or `--ids-file -`, reads standard input; blank lines and
    lines starting with `#` are skipped.
    """
    if ids_file is not None:
        return _lines(ids_file), None
    if arguments == ["-"]:
        return _lines("-"), None
    return list(arguments), len(arguments)


def _lines(source: str) -> Iterator[str]:
    # Opened now, read later: a missing file is reported before any work starts.
    stream = sys.stdin if source == "-" else Path(source).open(encoding="utf-8")  # noqa: SIM115
    return _stripped(stream)


def _stripped(stream: TextIO) -> Iterator[str]:
    try:
        for line in stream:
            text = line.strip()
            if text and not text.startswith("#"):
                yield text
    finally:
        if stream is not sys.stdin:
            stream.close()
