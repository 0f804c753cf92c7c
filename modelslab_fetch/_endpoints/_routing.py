"""From what a generation request returned to the fetch endpoint and id to wait on.

`fetch_result` is matched against the endpoint table, never contacted as given: the API
key travels in every fetch's body, so a URL outside the client's `base_url` is refused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import (
    ConfigurationError,
    ForeignFetchURLError,
    GenerationFailedError,
    InvalidRequestIdError,
    ModelsLabError,
    ResponseParseError,
)
from .._http._answers import error_in_body
from .._ids import lazily, normalize_request_id
from .._results import FetchResult
from .._server_json import TOO_DEEP, nested_deeper_than
from ._row import FetchEndpoint

__all__ = ["Queued", "Route", "body_of", "failure_of", "refusal", "resolve"]

Queued = Mapping[str, Any] | FetchResult
"""What a generation request returned: its decoded JSON body, or a `FetchResult` of it."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Route:
    """Where to wait for one queued job: its endpoint (by table name) and request id."""

    name: str
    """The endpoint's dotted attribute name, e.g. `"video"` or `"enterprise.three_d"`."""
    endpoint: FetchEndpoint[Any]
    request_id: str


def body_of(queued: object) -> dict[str, Any]:
    """The response body `queued` stands for; raises `ConfigurationError` for anything else."""
    if isinstance(queued, FetchResult):
        return dict(queued.raw) if queued.raw else queued.model_dump(mode="json")
    if isinstance(queued, Mapping):
        return dict(queued)
    raise ConfigurationError(
        f"wait_for takes what a generation request returned (its decoded JSON object, or "
        f"a FetchResult), not {type(queued).__name__}; to wait on a bare id use "
        "client.<endpoint>.wait(id)"
    )


def refusal(
    body: Mapping[str, Any], *, base_url: str, clean: Callable[[Any], Any]
) -> ModelsLabError | None:
    """The error a generation response stands for instead of a queued job, or None.

    Read through the one error table as any answer is; `clean` redacts the key.
    """
    if nested_deeper_than(body):
        return ResponseParseError(
            f"the generation response is {TOO_DEEP}",
            excerpt="<a JSON object nested too deeply to show>",
        )
    fetch_result = body.get("fetch_result")
    return error_in_body(
        body,
        request_id=_id_in(body),
        now=time.time(),
        url=fetch_result if isinstance(fetch_result, str) and fetch_result else base_url,
        clean=clean,
    )


def failure_of(
    body: Mapping[str, Any], *, clean: Callable[[Any], Any]
) -> GenerationFailedError | None:
    """A `GenerationFailedError` for a `failed`/`error` response with nothing to wait on."""
    status = body.get("status")
    if not isinstance(status, str) or status.strip().lower() not in ("failed", "error"):
        return None
    request_id = _id_in(body)
    result = FetchResult.from_body(dict(clean(dict(body))), request_id=request_id or "")
    return GenerationFailedError(result, request_id=request_id)


def resolve(
    body: Mapping[str, Any],
    *,
    base_url: str,
    table: Mapping[str, FetchEndpoint[Any]],
    endpoint: str | FetchEndpoint[Any] | None = None,
) -> Route:
    """The endpoint and id to wait on for the generation response `body`.

    Without `endpoint`, `fetch_result` must lie below `base_url` and name a row of `table`.
    """
    path_id: str | None = None
    if endpoint is not None:
        name, row = _named(endpoint, table)
    else:
        name, row, path_id = _from_fetch_result(body.get("fetch_result"), base_url, table)
    raw_id = body.get("id")
    if raw_id is None or raw_id == "" or isinstance(raw_id, bool):
        raw_id = path_id
    if raw_id is None:
        raise InvalidRequestIdError(
            "the response carries no request id (`id`), nor one in its fetch_result; "
            "wait on the id you were given with client.<endpoint>.wait(id)"
        )
    if isinstance(raw_id, float) and raw_id.is_integer():
        raw_id = int(raw_id)
    return Route(name, row, normalize_request_id(raw_id))


def _named(
    endpoint: str | FetchEndpoint[Any], table: Mapping[str, FetchEndpoint[Any]]
) -> tuple[str, FetchEndpoint[Any]]:
    if isinstance(endpoint, FetchEndpoint):
        for name, row in table.items():
            if row == endpoint:
                return name, row
        return endpoint.path_template, endpoint
    found = table.get(endpoint)
    if found is None:
        raise ConfigurationError(f"no endpoint named {endpoint!r}; use one of: {', '.join(table)}")
    return endpoint, found


def _from_fetch_result(
    url: object, base_url: str, table: Mapping[str, FetchEndpoint[Any]]
) -> tuple[str, FetchEndpoint[Any], str | None]:
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            "the response has no fetch_result URL to tell its endpoint; pass endpoint= "
            f"(one of: {', '.join(table)})"
        )
    try:
        given, base = urlsplit(url.strip()), urlsplit(base_url)
        same_origin = _origin(given) == _origin(base)
    except ValueError:  # a malformed port or host
        same_origin = False
    if not same_origin:
        raise ForeignFetchURLError(
            f"refusing to fetch from {url!r}: it is not below this client's base_url "
            f"{base_url!r}, and the API key would be sent there. Nothing was sent. If it "
            "is right, create the client with that base_url; else pass endpoint="
        )
    root = base.path.rstrip("/")
    if not given.path.startswith(root + "/"):
        raise ForeignFetchURLError(
            f"refusing to fetch from {url!r}: its path is not below this client's "
            f"base_url {base_url!r}. Nothing was sent; pass endpoint= to choose one"
        )
    below = given.path[len(root) :]
    for name, row in table.items():
        matched, path_id = row.match_path(below)
        if matched:
            return name, row, path_id
    raise ConfigurationError(
        f"fetch_result {url!r} names no known fetch endpoint; pass endpoint= "
        f"(one of: {', '.join(table)})"
    )


def _origin(parts: Any) -> tuple[str, str, int | None]:
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


class QueuedItems:
    """The inputs of `wait_for_many`, read lazily, each turned into a batch key.

    A key is the request id, `name:id` when the same id was just seen on another endpoint
    (a batch answers each key once).
    """

    def __init__(
        self,
        items: Iterable[Queued] | AsyncIterable[Queued],
        *,
        base_url: str,
        table: Mapping[str, FetchEndpoint[Any]],
        endpoint: str | FetchEndpoint[Any] | None,
        remembered: int,
        clean: Callable[[Any], Any],
    ) -> None:
        self._items = items
        self._clean = clean
        self._base_url = base_url
        self._table = table
        self._endpoint = endpoint
        self._remembered = remembered
        self._seen: OrderedDict[str, str] = OrderedDict()  # id -> endpoint name, recent
        self._pending: OrderedDict[str, tuple[Route | None, dict[str, Any], Exception | None]]
        self._pending = OrderedDict()

    def keys(self) -> Iterator[str] | AsyncIterator[str]:
        """The batch keys, one per input, read as the batch asks for them."""
        return lazily(self._items, self._key_for)

    def _key_for(self, position: int, item: object) -> str:
        route: Route | None = None
        error: Exception | None = None
        body: dict[str, Any] = {}
        try:
            body = body_of(item)
            error = refusal(body, base_url=self._base_url, clean=self._clean)
            if error is None:
                route = resolve(
                    body, base_url=self._base_url, table=self._table, endpoint=self._endpoint
                )
        except (ConfigurationError, InvalidRequestIdError) as exc:
            error = failure_of(body, clean=self._clean) or exc
        if route is not None:
            key = self._unique(route.request_id, route.name, position)
        else:  # no endpoint to ask: named by its id, a success kept as it is
            named = _id_in(body)
            if named is None:
                key = f"input-{position}"
            else:
                key = self._unique(named, _UNROUTED, position)
                if says_success(body):
                    error = None
        self._pending[key] = (route, body, error)
        self._pending.move_to_end(key)
        if len(self._pending) > self._remembered:
            self._pending.popitem(last=False)
        return key

    def _unique(self, request_id: str, name: str, position: int) -> str:
        # The same id just seen on another endpoint is another job: keep them apart.
        seen = self._seen.get(request_id)
        if seen is not None and seen != name:
            return f"input-{position}" if name == _UNROUTED else f"{name}:{request_id}"
        self._seen[request_id] = name
        self._seen.move_to_end(request_id)
        if len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        return request_id

    def take(self, key: str) -> tuple[Route | None, dict[str, Any]]:
        """What `key` stands for (no route: a success); raises its input's error."""
        route, body, error = self._pending.pop(key)
        if error is not None:
            raise error
        return route, body


_UNROUTED = ""  # the endpoint "name" of a response that cannot be routed


def says_success(body: Mapping[str, Any]) -> bool:
    """Whether a response body says its job succeeded (its `status`, in any case)."""
    status = body.get("status")
    return isinstance(status, str) and status.strip().lower() == "success"


def _id_in(body: Mapping[str, Any]) -> str | None:
    raw_id = body.get("id")
    if isinstance(raw_id, float) and raw_id.is_integer():
        raw_id = int(raw_id)
    try:
        return normalize_request_id(raw_id)
    except ValueError:
        return None
