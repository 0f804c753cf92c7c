"""The async calls of one fetch endpoint, and the stop of a batch at an account-level error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from .._clock import Clock
from .._closing import CallGroup, CallScope
from .._errors import AccountError
from .._fleet._link import FleetLink
from .._http._transport import Transport
from .._ids import RequestId, normalize_request_id
from .._jobs._batch import AsyncBatch, ProgressCallback
from .._jobs._deliveries import DeliveryHub, Watch
from .._jobs._polling import (
    DEFAULT_WAIT_TIMEOUT,
    PollPolicy,
    check_wait_timeout,
    wait_until_finished,
)
from .._jobs._shared import SharedPoll
from .._jobs._updates import UpdateCallback
from .._results import FetchResult
from ._row import FetchEndpoint

__all__ = ["DEFAULT_WAIT_MANY_CONCURRENCY", "AccountStop", "AsyncFetchResource", "FetchResource"]

DEFAULT_WAIT_MANY_CONCURRENCY = 1024
"""How many ids `wait_many` waits on at once by default. Waiting ids mostly sleep between
polls, so this can be far above the client's `max_concurrency`, which caps real requests."""

logger = logging.getLogger("modelslab_fetch")

R = TypeVar("R", bound=FetchResult)


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
        fleet: FleetLink | None = None,
    ) -> None:
        self._deliveries = deliveries  # webhooks: deliveries end waits (see _deliveries)
        self._fleet = fleet  # redis_url: one poller per id in the fleet (see _jobs/_shared)
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
        transport = self._transport
        with transport.calls.scope(rid, shields=not transport.cancels_natively):
            return await self._fetch_checked_id(rid)

    def _wait_checked_id(
        self, rid: str, timeout: float | None, on_update: UpdateCallback | None = None
    ) -> Awaitable[R]:
        # The poll schedule retries transient failures itself, within the deadline;
        # transport retries would sleep on their own schedule, blind to it.
        return self._poll_until_done(
            lambda: self._fetch_checked_id(rid, retry=False), rid, timeout, on_update
        )

    async def _wait_from(
        self,
        rid: str,
        body: dict[str, Any],
        timeout: float | None,
        on_update: UpdateCallback | None = None,
    ) -> R:
        """Wait as `wait()` does, the generation response `body` read as the first poll.

        No request is sent for it: a finished one is returned (or raised) at once, and an
        unfinished one schedules the real first poll by its own `eta`.
        """
        first = self._endpoint.parse(body, request_id=rid, endpoint_name=self._name)
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
        fleet = self._fleet
        # The fleet's shared poll releases its claim in a shielded section, as httpx's
        # pool hands back a connection: anyio's own scope for those (see `_closing`).
        shields = fleet is not None or not self._transport.cancels_natively
        if hub is None:  # no webhooks: the wait alone, in the call's scope (the usual case)
            with self._transport.calls.scope(rid, shields=shields) as call:
                return await self._wait(
                    poll, rid=rid, timeout=timeout, on_update=on_update, first=first, call=call
                )
        scope = self._endpoint.path_template
        with (
            self._transport.calls.scope(rid, shields=shields) as call,
            hub.watch(rid, parse=self._parse_delivery(rid), scope=scope) as watch,
        ):
            if fleet is None:
                # The call's scope carries the wait's deadline too: one scope, not two.
                return await self._wait(
                    poll,
                    rid=rid,
                    timeout=timeout,
                    on_update=on_update,
                    first=first,
                    watch=watch,
                    call=call,
                )
            shared = SharedPoll(
                fleet,
                scope=scope,
                request_id=rid,
                poll=poll,
                watch=watch,
                processing=lambda eta: self._endpoint.parse(
                    {"status": "processing", "id": rid, "eta": eta},
                    request_id=rid,
                    endpoint_name=self._name,
                ),
            )
            try:
                await shared.recall()
                return await self._wait(
                    shared, rid=rid, timeout=timeout, on_update=on_update, first=first, watch=watch
                )
            finally:
                await shared.release()

    def _wait(
        self,
        poll: Callable[[], Awaitable[R]],
        *,
        rid: str,
        timeout: float | None,
        on_update: UpdateCallback | None,
        first: R | None,
        watch: Watch[R] | None = None,
        call: CallScope | None = None,
    ) -> Awaitable[R]:
        # `call` not with a shared poll (the fleet): its release, after the wait, must
        # not run in a scope the deadline has cancelled. A plain function, not a
        # coroutine: one frame less for every resumption of the request under it.
        return wait_until_finished(
            poll,
            request_id=rid,
            timeout=timeout,
            policy=self._poll_policy,
            clock=self._clock,
            on_update=on_update,
            transient=self._transport.is_transient,
            events=self._transport.events,
            first=first,
            watch=watch,
            call=call,
            poll_bound=self._transport.attempt_bound,
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
        return self._endpoint._parse(body, rid, self._name, checked=True)


class AccountStop(CallGroup):
    """Stops one batch from sending once the server refuses the account itself.

    A wrong key, no credits or a plan that forbids the call is the same answer for every
    id: learning it 100,000 times costs 100,000 requests. The first `AccountError` cancels
    the batch's other work (requests waiting for a slot are never sent) and every id not
    yet answered gets an outcome carrying that same error, named for its own id.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"AccountStop(stopped={self.error is not None})"

    def guard(self, work: Callable[[str], Awaitable[R]]) -> Callable[[str], Awaitable[R]]:
        """`work`, made to stop (and to stop the others) at the first account error."""

        async def guarded(request_id: str) -> R:
            # The work's calls join this group: its stop cancels their scopes, and a
            # request admitted in the same instant is refused before it is sent.
            token = self.join(request_id)
            try:
                return await work(request_id)
            except AccountError as exc:
                if self.error is None:
                    logger.warning("%s; no further requests are sent for this batch", exc)
                self.stop(exc)
                raise
            finally:
                self.leave(token)

        return guarded


FetchResource = AsyncFetchResource
"""The former name of `AsyncFetchResource`, kept so that existing imports work."""
