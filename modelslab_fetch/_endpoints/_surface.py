"""What a namespace of endpoint rows becomes on a client: async resources, or blocking ones.

Rows and groups are descriptors, with overloads mypy follows on both clients.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._row import FetchEndpoint

if TYPE_CHECKING:
    from ._blocking import SyncFetchResource
    from ._resource import AsyncFetchResource

__all__ = ["AsyncSurface", "Group", "SyncSurface", "rows_of"]


class _Surface:
    """Resources for rows, made by one client once each when first read; groups likewise."""

    _make: Callable[[FetchEndpoint[Any]], Any]
    _made: dict[FetchEndpoint[Any] | Group[Any, Any], Any]

    def _bind(self, make: Callable[[FetchEndpoint[Any]], Any]) -> None:
        self._make = make
        self._made = {}

    def _resource_for(self, endpoint: FetchEndpoint[Any]) -> Any:
        found = self._made.get(endpoint)
        if found is None:
            found = self._made[endpoint] = self._make(endpoint)
        return found

    def _group_for(self, group: Group[Any, Any], cls: type[_Surface]) -> Any:
        found = self._made.get(group)
        if found is None:
            found = self._made[group] = cls.__new__(cls)
            found._make, found._made = self._make, self._made  # one cache for the client
        return found

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(rows_of(type(self)))})"


class AsyncSurface(_Surface):
    """Endpoint rows read on an async client are `AsyncFetchResource`s."""

    def _resource_for(self, endpoint: FetchEndpoint[Any]) -> AsyncFetchResource[Any]:
        resource: AsyncFetchResource[Any] = super()._resource_for(endpoint)
        return resource


class SyncSurface(_Surface):
    """Endpoint rows read on a blocking client are `SyncFetchResource`s."""

    def _resource_for(self, endpoint: FetchEndpoint[Any]) -> SyncFetchResource[Any]:
        resource: SyncFetchResource[Any] = super()._resource_for(endpoint)
        return resource


A = TypeVar("A", bound=AsyncSurface)
S = TypeVar("S", bound=SyncSurface)


class Group(Generic[A, S]):
    """A namespace of rows (`client.enterprise`, `client.v7`), as its two client classes."""

    def __init__(self, async_class: type[A], sync_class: type[S]) -> None:
        self.async_class = async_class
        self.sync_class = sync_class

    def __repr__(self) -> str:
        return f"Group({self.async_class.__name__}, {self.sync_class.__name__})"

    def __set__(self, obj: object, value: object) -> None:
        # A data descriptor, as rows are: `help()` shows the group with its doc.
        raise AttributeError("a client's endpoint groups are read-only")

    def __set_name__(self, owner: type[Any], name: str) -> None:
        # The rows' own class (e.g. EnterpriseEndpoints) says what the group is, for both
        # clients; the surface classes' docs name one client only.
        what = (self.async_class.__bases__[0].__doc__ or name).strip().splitlines()[0]
        rows = textwrap.fill(", ".join(rows_of(self.async_class)) + ".", width=80)
        self.__doc__ = (
            f"{what}\n\nEndpoints, each a resource with `.fetch`, `.wait`, `.fetch_many` "
            f"and `.wait_many`:\n{rows}"
        )

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Group[A, S]: ...
    @overload
    def __get__(self, obj: AsyncSurface, owner: type[Any] | None = None) -> A: ...
    @overload
    def __get__(self, obj: SyncSurface, owner: type[Any] | None = None) -> S: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> object:
        if obj is None:
            return self
        if isinstance(obj, AsyncSurface):
            return obj._group_for(self, self.async_class)
        assert isinstance(obj, SyncSurface)  # noqa: S101 - rows live only on surfaces
        return obj._group_for(self, self.sync_class)


_NOT_ROWS = frozenset({AsyncSurface, SyncSurface, _Surface, object})


def rows_of(cls: type[Any]) -> dict[str, FetchEndpoint[Any] | Group[Any, Any]]:
    """The rows and groups `cls` (or its bases) declares, by attribute name, in order."""
    found: dict[str, FetchEndpoint[Any] | Group[Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        if klass in _NOT_ROWS:
            continue
        for name, value in vars(klass).items():
            if isinstance(value, FetchEndpoint | Group):
                found[name] = value
            elif name in found:  # a subclass replaced the row with something else
                del found[name]
    return found
