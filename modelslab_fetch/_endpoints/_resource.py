"""Layer 3's shared part: a fetch endpoint described as data, and the resource that serves it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from urllib.parse import quote

import anyio
import pydantic

from .._clock import Clock
from .._errors import (
    AccountError,
    ConfigurationError,
    ResponseParseError,
)
from .._http._answers import excerpt_of
from .._http._traffic import last_check_before_sending
from .._http._transport import Transport
from .._ids import RequestId, normalize_request_id
from .._jobs._batch import AsyncBatch, ProgressCallback
from .._jobs._deliveries import DeliveryHub
from .._jobs._polling import (
    DEFAULT_WAIT_TIMEOUT,
    PollPolicy,
    check_wait_timeout,
    wait_until_finished,
)
from .._jobs._updates import UpdateCallback
from .._results import FetchResult

if TYPE_CHECKING:
    from ._blocking import SyncFetchResource
    from ._surface import AsyncSurface, SyncSurface

__all__ = ["DEFAULT_WAIT_MANY_CONCURRENCY", "AccountStop", "AsyncFetchResource", "FetchEndpoint"]

DEFAULT_WAIT_MANY_CONCURRENCY = 1024
"""How many ids `wait_many` waits on at once by default. Waiting ids mostly sleep between
polls, so this can be far above the client's `max_concurrency`, which caps real requests."""

logger = logging.getLogger("modelslab_fetch")

R = TypeVar("R", bound=FetchResult)

_unknown_statuses_logged: set[str] = set()
_UNKNOWN_STATUS_LOG_LIMIT = 64


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
        return self.path_template.format(id=quote(request_id, safe=""))

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
        error: ResponseParseError | None = None
        try:
            result = self.result_model.from_body(
                body, request_id=request_id, endpoint_name=endpoint_name
            )
        except (ValueError, RecursionError) as exc:
            error = ResponseParseError(
                f"the response is not a fetch result: {_first_problem(exc)}",
                excerpt=_excerpt_of_body(body),
                request_id=request_id,
            )
        if error is not None:  # raised outside the handler: no __context__ to carry
            raise error
        if result.raw_status.strip().lower() != result.status.value:
            _log_unknown_status_once(result.raw_status)
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


def _log_unknown_status_once(raw_status: str) -> None:
    if raw_status in _unknown_statuses_logged:
        return
    if len(_unknown_statuses_logged) >= _UNKNOWN_STATUS_LOG_LIMIT:
        return  # a server inventing statuses endlessly: enough has been said
    _unknown_statuses_logged.add(raw_status)
    logger.warning(
        "unknown status %r from ModelsLab, treated as not finished yet", raw_status[:100]
    )


class AsyncFetchResource(Generic[R]):
    """The calls one fetch endpoint offers: `fetch` once, or `wait` until finished."""

    def __init__(
        self,
        endpoint: FetchEndpoint[R],
        transport: Transport,
        *,
        poll_policy: PollPolicy,
        clock: Clock,
        name: str | None = None,
        deliveries: DeliveryHub | None = None,
    ) -> None:
        self._deliveries = deliveries  # webhooks: deliveries end waits (see _deliveries)
        self._endpoint = endpoint
        self._name = name  # the table's name for the endpoint, carried by every result
        self._transport = transport
        self._poll_policy = poll_policy
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._endpoint.path_template!r})"

    @property
    def endpoint(self) -> FetchEndpoint[R]:
        """The endpoint this resource fetches from."""
        return self._endpoint

    async def fetch(self, request_id: RequestId) -> R:
        """Ask once where the job `request_id` stands; one POST (plus transport retries).

        Returns the typed result whatever its status, `processing` included. Raises
        `InvalidRequestIdError` before sending anything for a malformed id, and
        `AuthenticationError`, `APIStatusError`, `APIConnectionError` or
        `ResponseParseError` when the exchange fails.
        """
        return await self._fetch_one(normalize_request_id(request_id))

    async def wait(
        self,
        request_id: RequestId,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_update: UpdateCallback | None = None,
    ) -> R:
        """Poll the job `request_id` until it finishes; return the success result.

        Polls are spaced by the server's `eta` (see `PollPolicy`); transient failures
        (network, overload, every rate limit) are polled through until the deadline.
        Raises `GenerationFailedError` if the job ends `failed` or `error`, and
        `WaitTimeoutError` (carrying the last result) when `timeout` seconds pass first;
        `None` waits without a deadline. `on_update` is called after every poll with a
        `PollUpdate` (status, `eta`, polls so far, next poll), e.g. to show "queued,
        about 20 s left"; an exception it raises ends the wait.
        """
        return await self._wait_checked_id(normalize_request_id(request_id), timeout, on_update)

    def fetch_many(
        self,
        ids: Iterable[RequestId] | AsyncIterable[RequestId],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> AsyncBatch[R]:
        """Fetch each id once; an async iterator of one `Outcome` per input id.

        `concurrency` ids are fetched at once (default: the client's `max_concurrency`).
        `ids` is read as `wait_many` reads it (a file object one id a line). Outcomes
        come as they finish, or in input order with `ordered=True`. An outcome
        is `ok` when the fetch answered, whatever the job's status. `on_progress` is
        called with a `Progress` after each outcome.
        """
        self._refuse_if_closed()
        return AsyncBatch(
            ids,
            AccountStop().guard(self._fetch_one),
            concurrency=self._transport.max_concurrency if concurrency is None else concurrency,
            ordered=ordered,
            on_progress=on_progress,
        )

    def wait_many(
        self,
        ids: Iterable[RequestId] | AsyncIterable[RequestId],
        *,
        concurrency: int | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
        on_update: UpdateCallback | None = None,
    ) -> AsyncBatch[R]:
        """Wait for each id to finish; an async iterator of one `Outcome` per input id.

        Each id is waited on as by `wait()`, its `timeout` counted from when its
        polling starts; an outcome is `ok` only for a success. Up to `concurrency` ids
        are waited on at once (default 1024: they mostly sleep; the client's
        `max_concurrency` caps the requests). Read the ids lazily from any iterable or
        async iterable, item by item; a file object (`open("ids.txt")`, `sys.stdin`,
        anyio's `AsyncFile`) is read as `--ids-file` is: one id a line, stripped, blank
        lines and `#` comments skipped. Duplicates are asked for once. Outcomes come as
        they finish, or in input order with `ordered=True`. `on_progress` hears of each
        outcome (`Progress`), `on_update` of each poll of each id (`PollUpdate`).
        """
        check_wait_timeout(timeout)
        self._refuse_if_closed()
        return AsyncBatch(
            ids,
            AccountStop().guard(lambda rid: self._wait_checked_id(rid, timeout, on_update)),
            concurrency=DEFAULT_WAIT_MANY_CONCURRENCY if concurrency is None else concurrency,
            ordered=ordered,
            on_progress=on_progress,
        )

    def _refuse_if_closed(self) -> None:
        self._transport.calls.check_open()

    async def _fetch_one(self, rid: str) -> R:
        # A call of its own (fetch(), an id of fetch_many): closing the client ends it.
        with self._transport.calls.scope(rid):
            return await self._fetch_checked_id(rid)

    async def _wait_checked_id(
        self, rid: str, timeout: float | None, on_update: UpdateCallback | None = None
    ) -> R:
        # The poll schedule retries transient failures itself, within the deadline;
        # transport retries would sleep on their own schedule, blind to it.
        return await self._poll_until_done(
            lambda: self._fetch_checked_id(rid, retry=False), rid, timeout, on_update
        )

    async def _wait_from(
        self, rid: str, first: R, timeout: float | None, on_update: UpdateCallback | None = None
    ) -> R:
        """Wait as `wait()` does, taking `first` (a generation response) as the first poll.

        No request is sent for it: a finished `first` is returned (or raised) at once,
        and an unfinished one schedules the real first poll by its own `eta`.
        """
        return await self._poll_until_done(
            lambda: self._fetch_checked_id(rid, retry=False), rid, timeout, on_update, first
        )

    async def _poll_until_done(
        self,
        poll: Callable[[], Awaitable[R]],
        rid: str,
        timeout: float | None,
        on_update: UpdateCallback | None,
        first: R | None = None,
    ) -> R:
        # Every wait (wait, wait_many, wait_for...) passes here: closing the client ends it.
        hub = self._deliveries
        with (
            self._transport.calls.scope(rid),
            (
                nullcontext() if hub is None else hub.watch(rid, parse=self._parse_delivery(rid))
            ) as watch,
        ):
            return await wait_until_finished(
                poll,
                request_id=rid,
                timeout=timeout,
                policy=self._poll_policy,
                clock=self._clock,
                on_update=on_update,
                transient=self._transport.is_transient,
                first=first,
                watch=watch,
            )

    def _parse_delivery(self, rid: str) -> Callable[[FetchResult], R]:
        # A trusted delivery becomes this endpoint's result, as a fetch answer would.
        return lambda result: self._endpoint.parse(
            result.raw, request_id=rid, endpoint_name=self._name
        )

    async def _fetch_checked_id(self, rid: str, *, retry: bool = True) -> R:
        body = await self._transport.post_json(
            self._endpoint.path(rid), self._endpoint.body(rid), request_id=rid, retry=retry
        )
        return self._endpoint.parse(body, request_id=rid, endpoint_name=self._name)


class AccountStop:
    """Stops one batch from sending once the server refuses the account itself.

    A wrong key, no credits or a plan that forbids the call is the same answer for every
    id: learning it 100,000 times costs 100,000 requests. The first `AccountError` cancels
    the batch's other work (requests waiting for a slot are never sent) and every id not
    yet answered gets an outcome carrying that same error, named for its own id.
    """

    def __init__(self) -> None:
        self.error: AccountError | None = None
        self._scopes: set[anyio.CancelScope] = set()

    def __repr__(self) -> str:
        return f"AccountStop(stopped={self.error is not None})"

    def guard(self, work: Callable[[str], Awaitable[R]]) -> Callable[[str], Awaitable[R]]:
        """`work`, made to stop (and to stop the others) at the first account error."""

        async def guarded(request_id: str) -> R:
            if self.error is not None:
                raise self.error.for_request(request_id)

            def refuse_once_stopped() -> None:
                if self.error is not None:
                    raise self.error.for_request(request_id)

            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                # Cancellation reaches a request waiting for a slot; this check reaches
                # one granted its slot in the same instant, before it is sent.
                token = last_check_before_sending.set(refuse_once_stopped)
                try:
                    return await work(request_id)
                except AccountError as exc:
                    self._stop(exc)
                    raise
                finally:
                    last_check_before_sending.reset(token)
                    self._scopes.discard(scope)
            # Only reached when _stop cancelled this work on another id's account error.
            assert self.error is not None  # noqa: S101 - set before any cancellation
            raise self.error.for_request(request_id)

        return guarded

    def _stop(self, error: AccountError) -> None:
        if self.error is None:
            self.error = error
            logger.warning("%s; no further requests are sent for this batch", error)
        for scope in list(self._scopes):
            scope.cancel()


FetchResource = AsyncFetchResource
"""The former name of `AsyncFetchResource`, kept so that existing imports work."""
