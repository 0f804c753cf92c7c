"""A blocking method takes the parameters of the async method it forwards to, declared once.

The blocking client mirrors the async one call for call. Rather than repeat each
parameter list (and keep two copies in step), a blocking twin is written as
`def wait(self, *args, **kwargs) -> R` under `@parameters_of(AsyncFetchResource.wait)`:
type checkers see the async method's parameters (a ParamSpec), `inspect.signature` and
`help()` show them, and the twin's own return type stays its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

__all__ = ["parameters_of"]

P = ParamSpec("P")
T = TypeVar("T")


def parameters_of(
    model: Callable[Concatenate[Any, P], Any],
) -> Callable[[Callable[..., T]], Callable[Concatenate[Any, P], T]]:
    """Give the decorated method the parameters of `model` (a method of the async twin)."""

    def decorate(twin: Callable[..., T]) -> Callable[Concatenate[Any, P], T]:
        own_return = inspect.signature(twin).return_annotation
        twin.__signature__ = inspect.signature(model).replace(  # type: ignore[attr-defined]
            return_annotation=own_return
        )
        return cast(Callable[Concatenate[Any, P], T], twin)

    return decorate
