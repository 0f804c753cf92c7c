"""`with x:` closes x, and `async with x:` acloses it: written once for every closable here."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["ClosesOnAsyncExit", "ClosesOnExit"]

_S = TypeVar("_S", bound="ClosesOnExit")
_A = TypeVar("_A", bound="ClosesOnAsyncExit")


class ClosesOnExit:
    """A `with` block ends by calling `close()`."""

    def close(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ClosesOnAsyncExit:
    """An `async with` block ends by awaiting `aclose()`."""

    async def aclose(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
