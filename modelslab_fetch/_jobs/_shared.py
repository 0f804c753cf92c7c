"""Waits shared by a fleet of workers (`redis_url=`): one poller per id, results for all.

A lease in Redis decides who polls; the holder keeps it alive across each sleep and, last,
stores and publishes the record while giving it up. The others only ask who holds it;
a dead holder's lease lapses and the next follower takes over. Redis down: each polls.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

from .._fleet._link import KEPT_SECONDS, FleetLink
from .._results import FetchResult
from ._deliveries import DeliveryHub, Watch, WebhookDelivery

__all__ = ["LEASE_FIRST", "LEASE_MARGIN", "SharedPoll", "join"]

logger = logging.getLogger("modelslab_fetch")

R = TypeVar("R", bound=FetchResult)

LEASE_FIRST = 5.0
"""Seconds a lease lives when taken: the holder's fetch, answered or timed out quickly."""
LEASE_MARGIN = 2.0
"""Seconds a lease outlives each sleep of its holder: the time its next fetch may take."""
FOLLOWER_LAG = 0.05
"""A follower looks this long after the lease would lapse: a holder renews it just then."""


def join(link: FleetLink, hub: DeliveryHub) -> None:
    """Feed what the fleet publishes into `hub`: deliveries and records others fetched."""

    def delivery(track_id: str, body: dict[str, Any]) -> None:
        result = FetchResult.from_body(body, request_id="")
        hub.offer(
            local=False,
            delivery=WebhookDelivery.received_now(track_id, result, len(json.dumps(body))),
        )

    def fetched(scope: str, request_id: str, body: dict[str, Any]) -> None:
        hub.offer_fetched(scope, request_id, FetchResult.from_body(body, request_id=request_id))

    link.heard.delivery = delivery
    link.heard.result = fetched
    link.heard.watched = hub.watched
    # Redis gone, a follower would learn nothing asleep: it polls for itself now.
    link.heard.down = hub.nudge_all


def share_deliveries(link: FleetLink) -> Callable[[WebhookDelivery], None]:
    """What a receiver calls with each new delivery it accepted: publish it to the fleet."""

    def share(delivery: WebhookDelivery) -> None:
        link.publish_delivery(delivery.request_id, delivery.track_id, delivery.result.raw)

    return share


class SharedPoll(Generic[R]):
    """One wait's `poll`, shared with the fleet: polls only while this worker holds the lease."""

    def __init__(
        self,
        link: FleetLink,
        *,
        scope: str,
        request_id: str,
        poll: Callable[[], Awaitable[R]],
        watch: Watch[R],
        processing: Callable[[float], R],
    ) -> None:
        self._link = link
        self._scope = scope
        self._request_id = request_id
        self._poll = poll
        self._watch = watch
        self._processing = processing  # what a follower's poll returns: "someone polls"
        self._token = uuid.uuid4().hex
        self._lease = link.key("lease", scope, request_id)
        self._result = link.key("result", scope, request_id)
        self.holding = False
        self.fetches = 0
        watch.before_sleep = self._keep_lease

    def __repr__(self) -> str:
        return f"SharedPoll({self._request_id!r}, holding={self.holding})"

    async def recall(self) -> None:
        """At the start: a delivery or a result the fleet kept for this id (ended waits)."""
        keys = [self._link.key("delivery", self._request_id), self._result]
        found = await self._link.run(lambda side: side.get_many(keys))
        for record in found or ():
            if record is not None:
                self._link.hear(record)

    async def __call__(self) -> R:
        decision = await self._link.run(
            lambda side: side.decide(self._result, self._lease, self._token, LEASE_FIRST)
        )
        if decision is None:  # Redis is down: this wait polls for itself
            self.holding = False
            return await self._fetch()
        kind, value = decision
        if kind == "theirs":
            self.holding = False
            return self._processing(float(value) + FOLLOWER_LAG)  # type: ignore[arg-type]
        if kind == "done":
            self.holding = False
            shared = self._from_record(str(value))
            if shared is not None:
                return shared
            return await self._fetch()
        self.holding = True
        result = await self._fetch()
        if result.finished:
            record = self._link.result_message(self._scope, self._request_id, result.raw)
            await self._link.run(
                lambda side: side.finish(
                    self._result,
                    self._lease,
                    self._token,
                    record=record,
                    kept=KEPT_SECONDS,
                    channel=self._link.channel,
                )
            )
            self.holding = False
        return result

    async def _fetch(self) -> R:
        self.fetches += 1
        return await self._poll()

    def _from_record(self, record: str) -> R | None:
        try:
            body = json.loads(record)["b"]
            return self._watch._parse(FetchResult.from_body(body, request_id=self._request_id))  # type: ignore[misc]
        except Exception:
            logger.debug("a shared record for %s did not parse; fetching", self._request_id)
            return None

    async def _keep_lease(self, seconds: float) -> None:
        if not self.holding:
            return
        ttl = seconds + LEASE_MARGIN
        kept = await self._link.run(lambda side: side.extend(self._lease, self._token, ttl))
        if kept is False:
            self.holding = False  # lapsed while this worker was slow: another polls now

    async def release(self) -> None:
        """At the end of the wait (whatever its end): give the lease up if still held."""
        if not self.holding:
            return
        self.holding = False
        # Shielded: a cancelled wait still lets the others take over at once.
        with anyio.CancelScope(shield=True):
            await self._link.run(lambda side: side.release(self._lease, self._token))
