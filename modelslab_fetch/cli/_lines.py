r"""Lines in and out: read at any line end, written to any stream whatever a server said.

A server may send a lone surrogate (`"\ud83d"`, half an emoji): valid JSON, but no UTF-8
writer can encode it. JSON lines escape it back (`\ud83d`, so reading the line gives the
very same text); text streams replace what they cannot encode instead of failing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, TextIO

__all__ = ["forgiving", "json_line", "physical_lines"]

CHUNK = 1 << 16
_BREAK = re.compile(rb"\r\n|\r|\n")

_SURROGATE = re.compile("[\ud800-\udfff]")
# surrogateescape (the C locale's) writes back only the surrogates it made from bytes.
_REFUSING = ("strict", "surrogateescape")


def json_line(value: Any) -> str:
    """`value` as one line of JSON (no newline), non-ASCII kept, always encodable as UTF-8."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isascii():
        return text
    # json.dumps writes a lone surrogate as itself, and only inside a string (a key or a
    # value), where its escape means the same: the line reads back exactly.
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def forgiving(stream: TextIO) -> None:
    r"""Make a text stream write what its encoding cannot hold as `\uXXXX`, not fail.

    Standard output is strict in a UTF-8 locale (and cannot write a lone surrogate in
    any): one odd character from a server would end the run.
    """
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and getattr(stream, "errors", None) in _REFUSING:
        reconfigure(errors="backslashreplace")


def physical_lines(file: BinaryIO) -> Iterator[bytes]:
    r"""The lines of `file`, without their ends: `\n`, `\r\n` and `\r`, mixed as they come.

    The same lines Python's text files give (universal newlines), so every reader of a
    file agrees on what line N is. In bytes, so that a line that is not UTF-8 can be
    named by its number (in UTF-8 a `\r` or `\n` byte is only ever itself). Read in
    chunks, each byte looked at once: linear whatever the file holds, one long line
    included; standard input is read as it arrives (`read1`), not in whole chunks.
    """
    read = getattr(file, "read1", file.read)
    pieces: list[bytes] = []  # the line so far, joined once its end is found
    after_cr = False  # the last chunk ended in \r: a \n starting this one is its pair
    while chunk := read(CHUNK):
        start = 1 if after_cr and chunk.startswith(b"\n") else 0
        for end in _BREAK.finditer(chunk, start):
            pieces.append(chunk[start : end.start()])
            yield b"".join(pieces)
            pieces = []
            start = end.end()
        if start < len(chunk):
            pieces.append(chunk[start:])
        after_cr = chunk.endswith(b"\r")
    if pieces:
        yield b"".join(pieces)
