"""Numbers: read leniently from what a server sent, checked strictly where a user passed them."""

from __future__ import annotations

import math

from ._errors import ConfigurationError

__all__ = ["checked_count", "checked_seconds", "finite_number"]


def finite_number(value: object) -> float | None:
    """`value` as a finite float (numbers and numeric strings: 5, 5.0, "5", " 5 "), or None.

    For what JSON or a header carried; never a bool.
    """
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


def checked_count(name: str, value: object, minimum: int) -> int:
    """The option `value` if it is an int (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def checked_seconds(
    name: str, value: object, *, positive: bool = False, infinite: bool = False, what: str = ""
) -> float:
    """The option `value` as a float if it is a number (not a bool) >= 0, or > 0 if `positive`.

    Finite unless `infinite`; `what` follows "must be a number" in the error.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (positive and value == 0)
        or (not infinite and math.isinf(value))
    ):
        kind = "a positive number" if positive else "a number >= 0"
        raise ConfigurationError(f"{name} must be {kind}{what}; got {value!r}")
    return float(value)
