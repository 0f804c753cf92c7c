r"""What a server's JSON may hold that would crash a later step: deep nesting, lone surrogates.

Both are valid JSON. Python's `json` accepts nesting up to its recursion limit (about
1,000 levels), and every later walk of the value (redaction, pydantic, `json.dumps` for
excerpts, logs and results files) recurses once or twice per level: a 1.5 kB body of 600
brackets passed `json.loads` and then raised a bare `RecursionError` far from it. So the
depth is bounded once, where a body enters the SDK, and everything after may walk it
freely. And JSON may carry `"\ud83d"`, half of an emoji cut by a server: Python decodes
it, but no UTF-8 writer (a file, a terminal, a log handler, pydantic's JSON) can encode
the result. Everything typed that the SDK hands on passes through `well_formed` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar, cast

__all__ = [
    "MAX_JSON_DEPTH",
    "TOO_DEEP",
    "bracket_count_allows",
    "may_hold_surrogates",
    "nested_deeper_than",
    "well_formed",
]

MAX_JSON_DEPTH = 64
"""The deepest nesting accepted in an answer. ModelsLab's bodies nest three or four levels
(`meta` holds a few objects); 64 leaves room for anything a real API sends while keeping
every walk of the value a few hundred stack frames at most."""

TOO_DEEP = (
    f"JSON nested more than {MAX_JSON_DEPTH} levels deep (ModelsLab's answers nest a few "
    "levels; this one is refused unread)"
)


def bracket_count_allows(content: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `content` has too few brackets to nest deeper than `limit`: a C-speed test.

    Almost every body passes it, and then needs no walk at all.
    """
    return content.count(b"[") + content.count(b"{") <= limit


def may_hold_surrogates(content: bytes) -> bool:
    r"""Whether JSON `content` may decode to text holding a lone surrogate: a C-speed test.

    False only when provably not, and then `well_formed` of its value changes nothing.
    `json.loads` decodes UTF-8 with "surrogatepass", so a surrogate comes from an escape
    (`\ud83d`, any case) or from its three raw bytes, which start with 0xED; other
    encodings (a BOM, or NULs among the first four bytes) always may.
    """
    head = content[:4]
    return (
        (b"\\u" in content and (b"\\ud" in content or b"\\uD" in content))
        or b"\xed" in content
        or b"\x00" in head
        or head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))
    )


def nested_deeper_than(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON `value` has containers nested more than `limit` levels deep.

    `{}` is one level, `{"a": [1]}` two. Walked with an explicit stack, and it stops at the
    first container past the limit, so it costs no more than the value's size.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


# Every UTF-16 surrogate code point: in a str decoded from JSON (which joins an escaped
# pair into one character) each of them is lone, and cannot be encoded.
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"

_SCALARS = frozenset({int, float, bool, type(None)})

_T = TypeVar("_T")


def well_formed(value: _T) -> _T:
    """`value` with every lone surrogate replaced by U+FFFD, in keys and text at any depth.

    Text, dicts and lists holding none are returned as they are (the common case costs
    one walk, and ASCII text is not even searched); otherwise a cleaned copy. Iterative,
    so a deeply nested body cannot exhaust the stack here.
    """
    if isinstance(value, str):
        return cast("_T", _clean(value))
    if not isinstance(value, dict | list) or not _has_surrogate(value):
        return value
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, dict[Any, Any] | list[Any]]] = [(holder, 0, value)]
    while stack:
        parent, slot, node = stack.pop()
        copy: Any
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            copy, pairs = {}, node.items()
        else:
            copy, pairs = [None] * len(node), enumerate(node)
        parent[slot] = copy
        for key, item in pairs:
            clean_key = _clean(key) if isinstance(key, str) else key
            if isinstance(item, dict | list):
                copy[clean_key] = None
                stack.append((copy, clean_key, item))
            else:
                copy[clean_key] = _clean(item) if isinstance(item, str) else item
    return cast("_T", holder[0])


def _clean(text: str) -> str:
    return text if text.isascii() else _SURROGATE.sub(_REPLACEMENT, text)


def _has_surrogate(value: dict[Any, Any] | list[Any]) -> bool:
    # Called on every response body: the common types are tested first, by identity,
    # and a dict's keys at once (joined, they are one ASCII test in the common case).
    stack: list[dict[Any, Any] | list[Any]] = [value]
    while stack:
        node = stack.pop()
        items: Iterable[Any] = node
        if isinstance(node, dict):
            try:
                plain_keys = "".join(node).isascii()
            except TypeError:  # keys that are not all text
                plain_keys = False
            if not plain_keys and any(
                isinstance(key, str) and _SURROGATE.search(key) for key in node
            ):
                return True
            items = node.values()
        for item in items:
            kind = type(item)
            if kind is str:
                if not item.isascii() and _SURROGATE.search(item):
                    return True
            elif kind in _SCALARS:
                continue
            elif isinstance(item, str):
                if _SURROGATE.search(item):
                    return True
            elif isinstance(item, dict | list):
                stack.append(item)
    return False
