"""A fetch endpoint described as data, one row of the table: where its id goes, what comes back."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from urllib.parse import quote

import pydantic

from .._errors import ConfigurationError, ResponseParseError
from .._http._answers import excerpt_of
from .._logging import log_once
from .._results import FetchResult, Status

if TYPE_CHECKING:
    from ._blocking import SyncFetchResource
    from ._resource import AsyncFetchResource
    from ._surface import AsyncSurface, SyncSurface

__all__ = ["FetchEndpoint"]

# The statuses as sent, for the check that an unknown word is said once (see `_parse`).
_STATUS_WORDS = frozenset(status.value for status in Status)

R = TypeVar("R", bound=FetchResult)


@dataclass(frozen=True)
class FetchEndpoint(Generic[R]):
    """A ModelsLab fetch endpoint, described as data: where an id goes, and what comes back.

    ModelsLab's fetch endpoints come in two shapes: the id in the body
    (`FetchEndpoint("/v6/images/fetch", id_field="request_id")`) or in the path
    (`FetchEndpoint("/v1/enterprise/super_resolution/fetch/{id}")`).
    """

    path_template: str
    """The path below `base_url`; `{id}` stands for the request id, if it goes in the path."""
    id_field: str | None = None
    """The body field that carries the request id, or None when it goes in the path."""
    result_model: type[R] = field(default=FetchResult)  # type: ignore[assignment]
    """The pydantic model a response body is parsed into."""
    output: str = "images"
    """What the endpoint's outputs are: `images`, `video`, `audio`, `3d` or `text`."""
    aliases: tuple[str, ...] = ()
    """Older paths of the same endpoint, recognised in a `fetch_result` URL (never sent to)."""

    # A row is declared once, as a class attribute of a client's namespace (see
    # `_endpoints/table.py`); read on a client, it is that client's resource for it.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> FetchEndpoint[R]: ...
    @overload
    def __get__(
        self, obj: AsyncSurface, owner: type[Any] | None = None
    ) -> AsyncFetchResource[R]: ...
    @overload
    def __get__(self, obj: SyncSurface, owner: type[Any] | None = None) -> SyncFetchResource[R]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> object:
        if obj is None:
            return self
        return obj._resource_for(self)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: object) -> None:
        # A data descriptor: `help()` then lists each row as a documented attribute of the
        # client (with the doc `__set_name__` writes), not as a method showing a repr.
        raise AttributeError(
            "a client's endpoints are read-only; use client.with_options(...) for other "
            "settings, or a FetchEndpoint of your own with wait_for(..., endpoint=)"
        )

    def __set_name__(self, owner: type[Any], name: str) -> None:
        where = "in the path" if self.id_field is None else f"in the body as `{self.id_field}`"
        doc = (
            f"`POST {self.path_template}`, the id {where}: {self.output}, "
            f"as `{self.result_model.__name__}`.\n\n"
            "A resource: `.fetch(id)`, `.wait(id, timeout=600)`, `.fetch_many(ids)`,\n"
            "`.wait_many(ids)` (see `AsyncFetchResource`, `SyncFetchResource`)."
        )
        object.__setattr__(self, "__doc__", doc)

    def __post_init__(self) -> None:
        in_path = "{id}" in self.path_template
        if in_path == (self.id_field is not None):
            raise ConfigurationError(
                "a fetch endpoint takes the request id in its path ({id}) or in id_field: "
                + ("not both" if in_path else "give one of them")
            )

    def match_path(self, path: str) -> tuple[bool, str | None]:
        """Whether `path` (below the API root) names this endpoint, and the id it carries."""
        for template in (self.path_template, *self.aliases):
            before, found, after = template.partition("{id}")
            if found:
                pattern = re.escape(before) + r"(?P<id>[^/?#]+)" + re.escape(after)
            else:
                pattern = re.escape(template.rstrip("/")) + r"(?:/(?P<id>[^/?#]+))?/?"
            match = re.fullmatch(pattern, path)
            if match is not None:
                return True, match.group("id")
        return False, None

    def path(self, request_id: str) -> str:
        """The request path for `request_id`."""
        template = self.path_template
        if "{" not in template:  # the id goes in the body (most rows): nothing to fill in
            return template
        return template.format(id=quote(request_id, safe=""))

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body for `request_id`, without the key (the transport adds it)."""
        return {} if self.id_field is None else {self.id_field: request_id}

    def parse(
        self, body: dict[str, Any], *, request_id: str, endpoint_name: str | None = None
    ) -> R:
        """Turn a decoded response body into a typed result.

        `request_id` and `endpoint_name` say what was asked where (see
        `FetchResult.request_id` and `FetchResult.endpoint_name`).

        Which bodies are errors was decided by the transport (`_http_errors`); here a body
        whose `status` is readable always becomes a result. Raises `ResponseParseError`
        only for a body with no readable `status`.
        """
        return self._parse(body, request_id, endpoint_name, checked=False)

    def _parse(
        self, body: dict[str, Any], request_id: str, endpoint_name: str | None, *, checked: bool
    ) -> R:
        # `checked`: an answer of the transport, already free of lone surrogates.
        error: ResponseParseError | None = None
        try:
            result = self.result_model._from_body(body, request_id, endpoint_name, checked=checked)
        except (ValueError, RecursionError) as exc:
            error = ResponseParseError(
                f"the response is not a fetch result: {_first_problem(exc)}",
                excerpt=_excerpt_of_body(body),
                request_id=request_id,
            )
        if error is not None:  # raised outside the handler: no __context__ to carry
            raise error
        raw_status = result.raw_status
        if raw_status not in _STATUS_WORDS and raw_status.strip().lower() != result.status:
            log_once(
                logging.WARNING,
                "unknown status %r from ModelsLab, treated as not finished yet",
                result.raw_status,
                result.raw_status[:100],
            )
        return result


def _excerpt_of_body(body: dict[str, Any]) -> str:
    try:
        return excerpt_of(json.dumps(body, ensure_ascii=False).encode())
    except (ValueError, RecursionError):  # nested past Python's stack, or NaN-like oddities
        return "<a JSON object nested too deeply to show>"


def _first_problem(error: Exception) -> str:
    if isinstance(error, pydantic.ValidationError):
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return str(error)
