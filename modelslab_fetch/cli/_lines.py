r"""Lines any stream takes: whatever a server said, the command can write it.

A server may send a lone surrogate (`"\ud83d"`, half an emoji): valid JSON, but no UTF-8
writer can encode it. JSON lines escape it back (`\ud83d`, so reading the line gives the
very same text); text streams replace what they cannot encode instead of failing.
"""

from __future__ import annotations

import json
import re
from typing import Any, TextIO

__all__ = ["forgiving", "json_line"]

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
