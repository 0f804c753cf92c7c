"""Sets of request ids in about 9 bytes each: what `--resume` and the id count need.

The ids a results file holds final, and the ids an ids file holds, may be millions: a
million final lines held as parsed JSON took about 1.9 GB, and a Python `set` of the
ids alone still takes about 70 MB. ModelsLab's ids are numbers: here each is 8 bytes in
a sorted array (looked up by bisection, in C) plus a byte of flags (failed, met in this
run). Ids that are not plain numbers (rare) are kept as text, exactly. No hashing:
membership is exact, so no id is ever skipped by a collision.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left

from .. import normalize_request_id

__all__ = ["IdSet", "resume_key"]

_FAILED = 1
_SEEN = 2
_LARGEST = (1 << 63) - 1  # a number id shifted left by one must fit in 64 bits
_RUN = 1 << 16  # sorted a run at a time: a whole sort would hold every id as an int object


class IdSet:
    """A set of ids, which of them failed, and which this run has met.

    Fill it with `add()` while reading a file, then `freeze()` it once; after that,
    `len()` counts each id once, and `in`, `failed()` and `first_sight()` answer in
    O(log n). Ids are compared as `normalize_request_id` gives them.
    """

    def __init__(self) -> None:
        self._adding: array[int] | None = array("Q")  # `id << 1 | failed`, unsorted
        self._numbers: array[int] = array("Q")  # sorted, each once
        self._flags = bytearray()  # per number: _FAILED | _SEEN
        self._texts: dict[str, int] = {}  # the ids that are not plain numbers: flags

    def __repr__(self) -> str:
        return f"IdSet({len(self)} ids)"

    def __len__(self) -> int:
        return len(self._numbers) + len(self._texts) + len(self._adding or ())

    def add(self, key: str, *, failed: bool = False) -> None:
        """Add `key` (marked as a failure if `failed`); before `freeze()` only."""
        if self._adding is None:
            raise RuntimeError("IdSet.add() after freeze()")  # pragma: no cover
        number = _number(key)
        if number is None:
            self._texts[key] = self._texts.get(key, 0) | (_FAILED if failed else 0)
        else:
            self._adding.append(number << 1 | failed)

    def freeze(self) -> IdSet:
        """Sort what was added (an id added twice is kept once, failed if either said so)."""
        adding, self._adding = self._adding, None
        if not adding:
            return self
        runs = [
            array("Q", sorted(adding[start : start + _RUN]))
            for start in range(0, len(adding), _RUN)
        ]
        del adding
        numbers, flags = self._numbers, self._flags
        for value in heapq.merge(*runs) if len(runs) > 1 else runs[0]:
            number = value >> 1
            if numbers and numbers[-1] == number:
                flags[-1] |= value & 1
            else:
                numbers.append(number)
                flags.append(value & 1)
        return self

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._where(key) is not None

    def failed(self, key: str) -> bool:
        """Whether `key` was added as a failure."""
        return bool(self._get(key) & _FAILED)

    def first_sight(self, key: str) -> bool:
        """Mark `key` as met by this run; True the first time (a later one is a repeat)."""
        where = self._where(key)
        if where is None:
            return False
        if isinstance(where, str):
            seen, self._texts[where] = self._texts[where] & _SEEN, self._texts[where] | _SEEN
        else:
            seen = self._flags[where] & _SEEN
            self._flags[where] |= _SEEN
        return not seen

    def _get(self, key: str) -> int:
        where = self._where(key)
        if where is None:
            return 0
        return self._texts[where] if isinstance(where, str) else self._flags[where]

    def _where(self, key: str) -> int | str | None:
        number = _number(key)
        if number is None:
            return key if key in self._texts else None
        index = bisect_left(self._numbers, number)
        if index < len(self._numbers) and self._numbers[index] == number:
            return index
        return None


def _number(key: str) -> int | None:
    """`key` as an int when it is one written plainly (no sign, no leading zero), else None.

    "0123" and "123" are different ids: only the plain spelling is kept as a number.
    """
    if not key.isdigit() or not key.isascii() or (key[0] == "0" and len(key) > 1):
        return None
    if len(key) > 19:
        return None
    number = int(key)
    return number if number <= _LARGEST else None


def resume_key(request_id: object) -> str | None:
    """What an `IdSet` compares for `request_id`: normalized, or as text if no id at all.

    A line for text that is no id is final too: `--resume` must not ask it again and
    append another line for it on every run. None for what is not even text.

    Raw text cannot collide with a normalized id: it is raw precisely because it fails
    `normalize_request_id`, which every normalized id passes.
    """
    try:
        return normalize_request_id(request_id)
    except (ValueError, TypeError):
        return request_id if isinstance(request_id, str) else None
