"""The simulator's webhook deliveries: what ModelsLab POSTs when a job with a `webhook` ends.

ModelsLab's generation webhooks are best effort: one POST of the job's final record to the
URL its generation request carried, a 2xx expected within 30 s, no retries, duplicates
possible ("use fetch as the fallback"). The simulator does the same, to loopback
addresses only (it is a test server), with seeded faults: deliveries dropped, duplicated,
delayed.

Deliveries go out from one background thread running its own asyncio loop and one
aiohttp session: nothing the ASGI routes do waits on them, however the app is served
(uvicorn in a thread, `modelslab-fetch simulate`, or in-process through
`httpx.ASGITransport`, where there is no server loop to borrow). aiohttp, not httpx (the
package depends on both): measured on loopback, a delivery costs 0.15-0.25 ms of CPU with
it and 1-4.5 ms with httpx, whose pool slows down as POSTs run concurrently. Each POST is
a task of its own, bounded by the delivery timeout, so a receiver that never answers
holds up only the deliveries to itself. A pending delivery is one small tuple in one
heap, so thousands cost little; the thread starts with the first delivery, and ends when
idle for a few seconds or when stopped (pending deliveries are then dropped, as a stopped
server sends nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import itertools
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

    from ._simulator import SimulatedJob

__all__ = [
    "DEFAULT_WEBHOOK_DELAY",
    "MAX_TRACK_ID_CHARS",
    "MAX_WEBHOOK_CHARS",
    "MAX_WEBHOOK_TIMEOUT",
    "WEBHOOK_TIMEOUT",
    "DeliveryPlan",
    "WebhookSender",
    "WebhookStats",
    "checked_track_id",
    "checked_webhook",
]

MAX_WEBHOOK_CHARS = 2048
"""The longest webhook URL taken (ModelsLab names no bound; browsers' common one)."""
MAX_TRACK_ID_CHARS = 256
"""The longest `track_id` taken (the SDK's own ids are far shorter)."""
WEBHOOK_TIMEOUT = 30.0
"""How long a receiver has to answer a delivery: ModelsLab's "2xx within 30 seconds"."""
MAX_WEBHOOK_TIMEOUT = 300.0
"""The longest delivery timeout the simulator takes."""
DEFAULT_WEBHOOK_DELAY = (0.02, 0.2)
"""Seconds from a job's readiness to its delivery, drawn uniformly: a short hop, as from a
queue worker to the internet."""

_IN_FLIGHT_PER_RECEIVER = 128
"""POSTs in flight to one receiver (scheme, host, port) at a time; the rest wait their turn,
so a receiver that never answers holds a bounded number of sockets, and only its own."""
_IDLE_SECONDS = 5.0
"""How long the delivery thread waits with nothing to do before it ends."""
_NAP = 0.5
"""The longest the thread sleeps before looking at the clock again: a clock moved by hand
(a test's) is noticed within this."""
_ANSWER_BYTES = 64 * 1024
"""How much of a receiver's answer is read (to reuse the connection); the rest is not."""


def checked_webhook(url: object) -> str:
    """`url` if it is an http(s) URL to this machine; `ValueError` saying why not otherwise.

    The message names the host given, never the whole URL: a webhook URL may carry a
    token, and tokens are kept out of messages.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(
            f"webhook must be a URL (a string like http://127.0.0.1:8000/hooks), "
            f"not {type(url).__name__}"
        )
    if len(url) > MAX_WEBHOOK_CHARS:
        raise ValueError(f"webhook is longer than {MAX_WEBHOOK_CHARS} characters")
    try:
        # urllib's parse, not httpx's: a tenth of the time, for 10,000 jobs a request.
        parsed = urlsplit(url)
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(
            "webhook is not a URL: give one like http://127.0.0.1:8000/hooks"
        ) from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(
            "webhook must be an http:// or https:// URL with a host, like "
            "http://127.0.0.1:8000/hooks"
        )
    if not _is_loopback(host):
        raise ValueError(
            f"webhook must point at this machine (127.0.0.0/8, ::1 or localhost), not "
            f"{host!r}: the simulator is a test server and posts nowhere else. Serve "
            "your receiver on 127.0.0.1 (its URL is what the simulator delivers to)"
        )
    return url


def _is_loopback(host: str) -> bool:
    # `host` as urlsplit gives it: lower case, no brackets around an IPv6 address.
    if host in ("127.0.0.1", "localhost", "::1"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_track_id(track_id: object) -> str | int | None:
    """`track_id` if it is None, a string or a whole number, and short; `ValueError` if not."""
    if track_id is None:
        return None
    if isinstance(track_id, bool) or not isinstance(track_id, str | int):
        kind = type(track_id).__name__
        raise ValueError(f"track_id must be a string or a whole number, not {kind}")  # noqa: TRY004
    if len(str(track_id)) > MAX_TRACK_ID_CHARS:
        raise ValueError(f"track_id is longer than {MAX_TRACK_ID_CHARS} characters")
    return track_id


@dataclass(frozen=True)
class DeliveryPlan:
    """How deliveries go: the webhook part of `Faults` (see there)."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    copies: int = 2
    delay: tuple[float, float] = DEFAULT_WEBHOOK_DELAY
    timeout: float = WEBHOOK_TIMEOUT


@dataclass(frozen=True)
class WebhookStats:
    """What became of the webhook deliveries so far (a snapshot; `as_dict()` for JSON).

    A job's delivery is dropped, sent once, or duplicated (sent `Faults.webhook_copies`
    times); each POST sent is then delivered (answered 2xx), refused (answered otherwise)
    or failed (no answer: connection refused or reset, or none within the timeout).
    """

    jobs: int = 0
    """Jobs queued with a webhook."""
    dropped: int = 0
    """Deliveries never sent (`Faults.webhook_drop_rate`)."""
    duplicated: int = 0
    """Deliveries sent more than once (`Faults.webhook_duplicate_rate`)."""
    sent: int = 0
    """POSTs made, every copy of a duplicated delivery counted."""
    delivered: int = 0
    """POSTs answered 2xx."""
    refused: int = 0
    """POSTs answered with another status."""
    failed: int = 0
    """POSTs with no answer: connection refused or reset, or none within the timeout."""
    pending: int = 0
    """Deliveries still to come: jobs not yet ready, copies waiting out their delay,
    POSTs in flight."""

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return {
            "jobs": self.jobs,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
            "sent": self.sent,
            "delivered": self.delivered,
            "refused": self.refused,
            "failed": self.failed,
            "pending": self.pending,
        }


BodyOf = Callable[["SimulatedJob", random.Random], "dict[str, Any] | None"]
"""The final record of a job, drawn from the given random source; None for a job that is
no longer the one queued under its id."""

# Heap entries: (due on the simulator's clock, sequence, job, body). A body of None marks
# the job's readiness (when its fate is drawn); bytes, one copy to send.
_Entry = tuple[float, int, "SimulatedJob", "bytes | None"]


class WebhookSender:
    """Delivers the final records of jobs to their webhooks, from a thread of its own.

    `schedule` a job (it must carry a loopback `webhook`): at its ready time its fate is
    drawn from a random source seeded by the seed and its id alone (so which delivery is
    dropped or duplicated does not depend on timing), then each copy is POSTed after its
    delay. Thread-safe.
    """

    def __init__(self, clock: Callable[[], float], body_of: BodyOf, *, seed: int = 0) -> None:
        self._clock = clock
        self._body_of = body_of
        self._seed = seed
        self._plan = DeliveryPlan()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._heap: list[_Entry] = []
        self._sequence = itertools.count()
        self._counts = dict.fromkeys(WebhookStats().as_dict(), 0)
        self._in_flight = 0
        """Deliveries taken off the heap and not yet done with (drawn, or POSTed)."""
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._sleeping_until: float | None = None

    def __repr__(self) -> str:
        return f"WebhookSender({self.stats!r})"

    def use(self, plan: DeliveryPlan, *, seed: int) -> None:
        """Deliver by `plan` from the next job that becomes ready on, seeded by `seed`."""
        with self._lock:
            self._plan = plan
            self._seed = seed

    @property
    def stats(self) -> WebhookStats:
        """What became of the deliveries so far."""
        with self._lock:
            return WebhookStats(**{**self._counts, "pending": self._pending()})

    def _pending(self) -> int:
        return len(self._heap) + self._in_flight

    def schedule(self, job: SimulatedJob) -> None:
        """Deliver `job`'s final record to its webhook once it is ready."""
        with self._lock:
            self._counts["jobs"] += 1
            self._push(job.ready_at, job, None)

    def _push(self, due: float, job: SimulatedJob, body: bytes | None) -> None:
        # Called with the lock held.
        heapq.heappush(self._heap, (due, next(self._sequence), job, body))
        if self._stopping:
            return  # dropped when the stop is done
        if self._worker is None:
            self._start()
        elif self._sleeping_until is not None and due < self._sleeping_until:
            # Wake the thread once, only if it sleeps past this delivery: queueing
            # thousands of jobs costs a few wake-ups, not one each.
            self._sleeping_until = None
            if self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

    def _start(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(
            target=self._main, name="modelslab-simulator-webhooks", daemon=True
        )
        self._worker = thread
        self._threads.append(thread)
        thread.start()

    def wait_until_settled(self, timeout: float) -> bool:
        """Block until no delivery is pending (or `timeout` seconds); whether none is."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending() == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop the deliveries still pending and end the thread (joined, within `timeout`).

        POSTs in flight are cancelled. A job scheduled later starts delivering again.
        """
        with self._lock:
            self._stopping = True
            self._heap.clear()
            threads = list(self._threads)
            if self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)
        for thread in threads:
            thread.join(timeout)
        with self._lock:
            # Anything scheduled while stopping is dropped too: the server is gone.
            self._heap.clear()
            self._stopping = False
            self._threads = [t for t in self._threads if t.is_alive()]
            self._settled.notify_all()

    # --- the delivery thread ---------------------------------------------------------

    def _main(self) -> None:
        asyncio.run(self._run())

    def _retire(self) -> bool:
        # With the lock held: this thread stops being the worker (a later job starts
        # another). False if it no longer was.
        if self._worker is not threading.current_thread():
            return False
        self._worker = None
        self._loop = self._wake = None
        self._sleeping_until = None
        return True

    async def _run(self) -> None:
        wake = asyncio.Event()
        with self._lock:
            if self._worker is not threading.current_thread():  # pragma: no cover - raced
                return
            self._loop = asyncio.get_running_loop()
            self._wake = wake
        import aiohttp  # noqa: PLC0415 - a second's import, paid when a delivery is due

        # Loopback only: no proxy from the environment (trust_env), no redirect followed
        # (one could lead anywhere, see _send), and no pool limit: the per-receiver bound
        # is ours, taken before a POST counts as sent.
        client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0), trust_env=False
        )
        tasks: set[asyncio.Task[None]] = set()
        receivers: dict[str, asyncio.Semaphore] = {}
        try:
            await self._deliver(wake, client, tasks, receivers)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
            with self._lock:
                if self._retire():
                    self._in_flight = 0  # the POSTs cancelled above, started or not
                self._settled.notify_all()

    async def _deliver(
        self,
        wake: asyncio.Event,
        client: aiohttp.ClientSession,
        tasks: set[asyncio.Task[None]],
        receivers: dict[str, asyncio.Semaphore],
    ) -> None:
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while True:
            with self._lock:
                if self._stopping:
                    return
                due, nap = self._take_due(wake)
                if due or self._heap or tasks:
                    idle_since = None
                else:
                    idle_since = loop.time() if idle_since is None else idle_since
                    if loop.time() - idle_since >= _IDLE_SECONDS:
                        self._retire()
                        return
            for _due, _n, job, body in due:
                if body is None:
                    self._ready(job)
                else:
                    task = asyncio.create_task(self._post(client, receivers, job, body))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if due:
                await asyncio.sleep(0)  # let the POSTs just started begin
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), nap)

    def _take_due(self, wake: asyncio.Event) -> tuple[list[_Entry], float]:
        """The entries due now, and how long to sleep if none is (with the lock held)."""
        now = self._clock()
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap))
        self._in_flight += len(due)
        nap = _IDLE_SECONDS
        if self._heap:
            nap = min(max(self._heap[0][0] - now, 0.0), _NAP)
        if not due:
            self._sleeping_until = now + nap
            wake.clear()
        return due, nap

    def _ready(self, job: SimulatedJob) -> None:
        """Draw the fate of `job`'s delivery, and schedule its copies."""
        with self._lock:
            plan, seed = self._plan, self._seed
        fate = random.Random(f"{seed}/webhook/{job.request_id}")  # noqa: S311 - simulation
        dropped = fate.random() < plan.drop_rate
        copies = plan.copies if fate.random() < plan.duplicate_rate else 1
        delays = [fate.uniform(*plan.delay) for _ in range(copies)]
        record = None
        if not dropped:
            # Drawn from a source of its own, so the fields do not move with the faults.
            source = random.Random(f"{seed}/webhook-body/{job.request_id}")  # noqa: S311
            record = self._body_of(job, source)
        with self._lock:
            self._in_flight -= 1
            if record is None:
                self._counts["dropped"] += dropped
            else:
                body = json.dumps(record).encode()
                self._counts["duplicated"] += copies > 1
                for delay in delays:
                    self._push(job.ready_at + delay, job, body)
            self._settled.notify_all()

    async def _post(
        self,
        client: aiohttp.ClientSession,
        receivers: dict[str, asyncio.Semaphore],
        job: SimulatedJob,
        body: bytes,
    ) -> None:
        url = job.webhook or ""
        with self._lock:
            timeout = self._plan.timeout
        outcome = "failed"
        try:
            origin = urlsplit(url).netloc
            limit = receivers.get(origin)
            if limit is None:
                limit = receivers[origin] = asyncio.Semaphore(_IN_FLIGHT_PER_RECEIVER)
            async with limit:
                with self._lock:
                    self._counts["sent"] += 1
                    job.webhooks_sent += 1
                outcome = await asyncio.wait_for(self._send(client, url, body), timeout)
        except asyncio.CancelledError:
            outcome = ""
            raise
        except Exception:  # any failure to deliver is a failed delivery, never the thread's end
            outcome = "failed"
        finally:
            with self._lock:
                if outcome:
                    self._in_flight -= 1
                    self._counts[outcome] += 1
                self._settled.notify_all()

    @staticmethod
    async def _send(client: aiohttp.ClientSession, url: str, body: bytes) -> str:
        headers = {"content-type": "application/json", "user-agent": "modelslab-simulator"}
        async with client.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            # A small answer is read whole (its connection is then reused); a larger one
            # is not: the connection is closed with it.
            await answer.content.read(_ANSWER_BYTES)
            return "delivered" if 200 <= answer.status < 300 else "refused"
