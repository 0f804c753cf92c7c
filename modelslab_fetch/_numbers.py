"""Reading a number of seconds from whatever JSON or a header carried: 5, 5.0, "5", " 5 "."""

from __future__ import annotations

import math

__all__ = ["finite_number"]


def finite_number(value: object) -> float | None:
    """`value` as a finite float (numbers and numeric strings), or None; never a bool."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
