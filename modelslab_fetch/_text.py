r"""Text any writer can write: lone surrogates from a server, replaced.

JSON may carry `"\ud83d"`, half of an emoji cut by a server: valid JSON, and Python
decodes it, but no UTF-8 writer (a file, a terminal, a log handler, pydantic's JSON) can
encode the result. Everything typed that the SDK hands on is passed through here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar, cast

__all__ = ["well_formed"]

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
