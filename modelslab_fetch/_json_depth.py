"""How deep decoded JSON nests, measured without recursion, so no answer can exhaust the stack.

Python's `json` accepts nesting up to its recursion limit (about 1,000 levels), and every
later walk of the value (redaction, pydantic, `json.dumps` for excerpts, logs and results
files) recurses once or twice per level: a 1.5 kB body of 600 brackets passed `json.loads`
and then raised a bare `RecursionError` far from it. So the depth is bounded once, where a
body enters the SDK, and everything after may walk it freely.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MAX_JSON_DEPTH", "TOO_DEEP", "bracket_count_allows", "nested_deeper_than"]

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
