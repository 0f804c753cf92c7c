"""The simulated ModelsLab queue: jobs with ready times, and the bodies the real API sends."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .. import endpoint_table
from ._media import KIND_FILES
from ._webhooks import (
    DeliveryPlan,
    WebhookSender,
    WebhookStats,
    checked_track_id,
    checked_webhook,
)

if TYPE_CHECKING:
    from ._faults import Faults

__all__ = ["ETA_ERROR_MODELS", "EXAMPLE_JOBS", "SimulatedJob", "Simulator"]

FinalStatus = Literal["success", "failed", "error"]
EtaErrorModel = Literal["per_answer", "per_job"]
ETA_ERROR_MODELS: tuple[EtaErrorModel, ...] = ("per_answer", "per_job")
"""The values of `Simulator(eta_error_model=...)`: an `eta` off by a factor drawn afresh for
each answer, or one factor per job (a consistent bias)."""

INVALID_KEY_BODY = {"status": "error", "message": "Invalid Api Key"}
"""The older endpoints' answer to a bad key, with HTTP 200."""
INVALID_KEY_401_BODY = {"status": "error", "message": "Invalid API key"}
"""The documented answer to a missing, invalid, revoked or expired key, with HTTP 401."""
NOT_FOUND_BODY = {"status": "failed", "id": "", "message": "Request not found", "output": ""}
"""The answer to an id the server does not know (or no longer keeps): `failed`, with
HTTP 200, though no generation failed."""


EXAMPLE_JOBS: dict[str, FinalStatus] = {
    "13443927": "success",
    "13443928": "success",
    "13443929": "success",
    "13443930": "failed",
    "12202888": "success",
}
"""The jobs the README's and docs' examples name, and how each ends (`queue_examples`)."""


@dataclass
class SimulatedJob:
    """One queued generation: `processing` until `ready_at`, then its `final` status."""

    request_id: str
    ready_at: float
    """When the job finishes, on the simulator's clock."""
    final: FinalStatus = "success"
    images: int = 1
    polls: int = 0
    """How many times the job has been fetched."""
    first_seen_finished: float | None = None
    """When a fetch first answered the final status, on the simulator's clock."""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    """What answers about the job carry in `meta` (the webhook too: kept out of the repr)."""
    kind: str = "images"
    """What the job outputs: `images`, `video`, `audio`, `3d` or `text` (its endpoint's)."""
    eta_bias: float | None = None
    """The factor every `eta` of this job is off by (per-job errors), or None for an
    error drawn afresh for each answer."""
    webhook: str | None = field(default=None, repr=False)
    """Where its final record is POSTed when it ends (a loopback URL), or None. Kept out
    of the repr: a webhook URL may carry a token."""
    track_id: str | int | None = None
    """The caller's own name for the job, echoed in `meta` and in the delivery."""
    webhooks_sent: int = 0
    """How many times its final record was POSTed to `webhook` (a duplicate counts)."""


class Simulator:
    """A faithful stand-in for ModelsLab's fetch endpoints, in memory.

    Each fetch of a job answers `processing` (with an `eta` that is the true remaining
    time off by up to `eta_error`) until its ready time, then `success` with image
    URLs, or `failed`/`error`. Bodies carry the wire quirks: int ids, the misspelt
    `messege`, numbers as strings now and then.
    Deterministic for a given `seed` and sequence of calls. Thread-safe.

    Args:
        api_key: The only key accepted; None accepts any non-empty key.
        seed: Seeds every random choice.
        eta_error: The largest relative error of a reported `eta` (0.4 is ±40%).
        eta_error_model: `"per_answer"` draws the error afresh for every answer;
            `"per_job"` draws one factor when a job is queued and applies it to every
            answer about that job (a server that consistently under- or over-estimates
            a job).
        auto_ready: Answer ids never queued as finished successes instead of
            "Request not found" (for throughput runs over arbitrary ids).
        invalid_key_status: How a key other than `api_key` is refused: 200, the older
            endpoints' `{"status": "error", "message": "Invalid Api Key"}`, or 401, the
            documented `{"status": "error", "message": "Invalid API key"}`.
        image_base_url: Where output image URLs point.
        clock: Monotonic seconds; `time.monotonic` by default. Deliveries of webhooks
            follow it too (looked at twice a second at least, so a clock moved by hand
            is seen).

    A job queued with a `webhook` (a URL to this machine) has its final record POSTed
    there when it ends, as ModelsLab does: see `queue`, `webhook_stats`,
    `wait_for_webhooks` and `stop_webhooks`, and `Faults` for lost, duplicated and
    late deliveries.

    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        seed: int = 0,
        eta_error: float = 0.4,
        eta_error_model: EtaErrorModel = "per_answer",
        auto_ready: bool = False,
        invalid_key_status: Literal[200, 401] = 200,
        image_base_url: str = "http://127.0.0.1/generations",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.eta_error = eta_error
        self.eta_error_model = _checked_model(eta_error_model)
        self.auto_ready = auto_ready
        if invalid_key_status not in (200, 401):
            raise ValueError(f"invalid_key_status must be 200 or 401, not {invalid_key_status!r}")
        self.invalid_key_status = invalid_key_status
        self.image_base_url = image_base_url.rstrip("/")
        self.clock = clock
        self._random = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._jobs: dict[str, SimulatedJob] = {}
        self._ids = itertools.count(13_443_927)
        self._lock = threading.Lock()
        self._webhooks = WebhookSender(clock, self._webhook_body, seed=seed)

    def __repr__(self) -> str:
        return f"Simulator(jobs={len(self._jobs)}, auto_ready={self.auto_ready})"

    @property
    def jobs(self) -> dict[str, SimulatedJob]:
        """Every job queued so far, by request id."""
        return self._jobs

    def queue(
        self,
        *,
        ready_in: float = 0.0,
        final: FinalStatus = "success",
        request_id: str | None = None,
        images: int = 1,
        kind: str = "images",
        eta_error_model: EtaErrorModel | None = None,
        webhook: str | None = None,
        track_id: str | int | None = None,
    ) -> str:
        """Queue one job that finishes `ready_in` seconds from now; return its id.

        `kind` is what it outputs (`images`, `video`, `audio`, `3d`, `text`); `images`
        is how many files. `eta_error_model` overrides the simulator's for this job.

        `webhook` and `track_id` are what a generation request may carry: both are echoed
        in the job's `meta`, and when the job ends its final record (what a fetch
        returns, with `track_id`) is POSTed to `webhook`, as ModelsLab does. The webhook
        must point at this machine (127.0.0.0/8, ::1 or localhost): anything else is a
        `ValueError`, as the simulator is a test server.
        """
        if kind not in KIND_FILES:
            raise ValueError(f"kind must be one of {', '.join(KIND_FILES)}, not {kind!r}")
        model = self.eta_error_model if eta_error_model is None else eta_error_model
        model = _checked_model(model)
        webhook = None if webhook is None else checked_webhook(webhook)
        track_id = checked_track_id(track_id)
        return self._queue(
            ready_in,
            final,
            request_id=request_id,
            images=images,
            kind=kind,
            model=model,
            webhook=webhook,
            track_id=track_id,
        )

    def _queue(
        self,
        ready_in: float,
        final: FinalStatus,
        *,
        request_id: str | None = None,
        images: int = 1,
        kind: str = "images",
        model: EtaErrorModel,
        webhook: str | None,
        track_id: str | int | None,
    ) -> str:
        with self._lock:
            rid = request_id
            while rid is None or (request_id is None and rid in self._jobs):
                # A made-up id never replaces a job queued under that id by name (the
                # example jobs of the docs, say).
                rid = str(next(self._ids))
            meta = {"prompt": "a simulated cat", "seed": self._random.randrange(1 << 31)}
            job = SimulatedJob(rid, self.clock() + ready_in, final, images, meta=meta, kind=kind)
            if model == "per_job":
                job.eta_bias = 1 + self._random.uniform(-self.eta_error, self.eta_error)
            if webhook is not None or track_id is not None:
                # ModelsLab echoes both in the meta of its answers.
                job.webhook, job.track_id = webhook, track_id
                given = {"webhook": webhook, "track_id": track_id}
                meta.update((name, value) for name, value in given.items() if value is not None)
            self._jobs[rid] = job
        if webhook is not None:
            self._webhooks.schedule(job)
        return rid

    def queue_examples(self, *, ready_in: float = 2.0) -> list[str]:
        """Queue the jobs the docs' examples wait on; return their ids.

        `EXAMPLE_JOBS`: 13443927, 13443928, 13443929 and 12202888 succeed, 13443930
        fails, each `ready_in` seconds from now (staggered by a fraction of a second);
        any other id stays unknown ("Request not found"), as 99999999 is meant to.
        `modelslab-fetch simulate` queues them, so the README's examples run against it
        as written.
        """
        for n, (request_id, final) in enumerate(EXAMPLE_JOBS.items()):
            self.queue(request_id=request_id, final=final, ready_in=ready_in + 0.25 * n)
        return list(EXAMPLE_JOBS)

    def queue_response(
        self,
        endpoint: str = "images",
        *,
        ready_in: float = 1.0,
        final: FinalStatus = "success",
        request_id: str | None = None,
        base_url: str | None = None,
        webhook: str | None = None,
        track_id: str | int | None = None,
    ) -> dict[str, Any]:
        """Queue a job on `endpoint` (a table name); return its generation response.

        The response is what ModelsLab answers a queued generation request: `processing`,
        the id, an `eta`, and `fetch_result` in its path form below `base_url` (by default
        this simulator's API root, once served), so `wait_for` can take it as it is.
        With a `webhook` (see `queue`), its `meta` echoes `webhook` and `track_id`, its
        `webhook_status` is `"pending"`, and the job's final record is POSTed there when
        it ends.
        """
        table = endpoint_table()
        if endpoint not in table:
            raise ValueError(f"no endpoint named {endpoint!r}; use one of: {', '.join(table)}")
        row = table[endpoint]
        rid = self.queue(
            ready_in=ready_in,
            final=final,
            request_id=request_id,
            kind=row.output,
            webhook=webhook,
            track_id=track_id,
        )
        root = (base_url or self.api_base_url).rstrip("/")
        template = row.path_template if "{id}" in row.path_template else row.path_template + "/{id}"
        job = self._jobs[rid]
        extra = {} if webhook is None else {"webhook_status": "pending"}
        return {
            "status": "processing",
            "tip": "Your request is processing in background, you can get it using fetch API",
            "eta": round(ready_in, 2),
            "messege": "Try to fetch request after seconds estimated",
            "fetch_result": root + template.format(id=rid),
            "id": self._wire_id(rid),
            "output": [],
            "meta": job.meta,
            "future_links": self._links(job),
            **extra,
        }

    @property
    def api_base_url(self) -> str:
        """The API root beside `image_base_url` (`.../generations` -> `.../api`)."""
        root = self.image_base_url
        if root.endswith("/generations"):
            root = root[: -len("/generations")]
        return root + "/api"

    def uniform(self, low: float, high: float) -> float:
        """A draw from the simulator's seeded random source, uniform in [low, high]."""
        with self._lock:
            return self._random.uniform(low, high)

    def queue_many(
        self,
        count: int,
        *,
        ready_in: tuple[float, float] = (1.0, 8.0),
        failure_rate: float = 0.0,
        eta_error_model: EtaErrorModel | None = None,
        webhook: str | None = None,
        webhooks: Sequence[Mapping[str, object]] | None = None,
    ) -> list[str]:
        """Queue `count` jobs, ready uniformly within `ready_in` seconds, some failing.

        `webhook` is delivered to by every job; `webhooks` gives each job its own, as
        `{"webhook": url, "track_id": ...}` mappings (what `client.webhooks.fields()`
        returns), one per job, `count` of them (a `webhook` of None: no delivery). Every
        one is checked (see `queue`) before any job is queued.
        """
        targets = _webhook_targets(count, webhook, webhooks)
        model = _checked_model(self.eta_error_model if eta_error_model is None else eta_error_model)
        ids = []
        for target_webhook, target_track_id in targets:
            with self._lock:
                delay = self._random.uniform(*ready_in)
                final: FinalStatus = (
                    self._random.choice(("failed", "error"))
                    if self._random.random() < failure_rate
                    else "success"
                )
            # Checked above, all of them, before any job was queued.
            ids.append(
                self._queue(
                    delay, final, model=model, webhook=target_webhook, track_id=target_track_id
                )
            )
        return ids

    # --- webhooks -------------------------------------------------------------------------

    @property
    def webhook_stats(self) -> WebhookStats:
        """What became of the webhook deliveries so far.

        Dropped, duplicated, sent, delivered (answered 2xx), refused (answered
        otherwise), failed (no answer), pending.
        """
        return self._webhooks.stats

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until no delivery is pending, at most `timeout` seconds; whether none is.

        Pending are the deliveries of jobs not yet ready, copies waiting out their delay
        and POSTs in flight.
        """
        return self._webhooks.wait_until_settled(timeout)

    def stop_webhooks(self) -> None:
        """Drop the deliveries still pending, and end the thread that sends them.

        The servers (`simulator_server`, `run_simulator`, `in_process_client`) call this
        when they stop. A job queued later with a webhook starts delivering again.
        """
        self._webhooks.stop()

    def deliver_with(self, faults: Faults, *, seed: int = 0) -> None:
        """Deliver webhooks with the `webhook_*` settings of `faults`, seeded by `seed`.

        `SimulatorApp` calls this with its faults; they apply to the jobs that become
        ready from then on.
        """
        plan = DeliveryPlan(
            drop_rate=faults.webhook_drop_rate,
            duplicate_rate=faults.webhook_duplicate_rate,
            copies=faults.webhook_copies,
            delay=faults.webhook_delay,
            timeout=faults.webhook_timeout,
        )
        self._webhooks.use(plan, seed=seed)

    def _webhook_body(self, job: SimulatedJob, source: random.Random) -> dict[str, Any] | None:
        """What ModelsLab POSTs when `job` ends, or None for a job replaced since.

        The record a fetch returns, with its `track_id`; a failure as the webhooks page
        shows it (`status: failed`, `id`, `message`), whether the job failed or erred.
        """
        with self._lock:
            if self._jobs.get(job.request_id) is not job:
                return None  # replaced by a job queued under its id since
            record = self._finished(job, source)
            if record["status"] != "success":
                message = record.get("message") or record.get("messege")
                record = {
                    "status": "failed",
                    "id": self._wire_id(job.request_id, source),
                    "message": message,
                    "output": [],
                }
            return {**record, "track_id": job.track_id}

    def fetch(self, request_id: str, key: object, *, fetch_url: str = "") -> dict[str, Any]:
        """The body ModelsLab sends for a fetch of `request_id` with `key`."""
        return self.answer(request_id, key, fetch_url=fetch_url)[1]

    def answer(
        self, request_id: str, key: object, *, fetch_url: str = "", kind: str = "images"
    ) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body ModelsLab sends for a fetch of `request_id` with `key`.

        `kind` is the output kind of the endpoint asked, for jobs `auto_ready` makes up.
        """
        if not self._key_accepted(key):
            if self.invalid_key_status == 401:
                return 401, dict(INVALID_KEY_401_BODY)
            return 200, dict(INVALID_KEY_BODY)
        return 200, self._answer(request_id, fetch_url, kind)

    def _answer(self, request_id: str, fetch_url: str, kind: str = "images") -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            job = self._jobs.get(request_id)
            if job is None:
                if not self.auto_ready:
                    return dict(NOT_FOUND_BODY)
                job = self._jobs[request_id] = SimulatedJob(request_id, now, kind=kind)
            job.polls += 1
            if now < job.ready_at:
                return self._processing(job, now, fetch_url)
            if job.first_seen_finished is None:
                job.first_seen_finished = now
            return self._finished(job)

    def _key_accepted(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        return self.api_key is None or key == self.api_key

    def polls(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        """How many fetches each job has had."""
        with self._lock:
            chosen = self._jobs if ids is None else {i: self._jobs[i] for i in ids}
            return {rid: job.polls for rid, job in chosen.items()}

    def _wire_id(self, request_id: str, source: random.Random | None = None) -> int | str:
        # The real API sends numeric ids as ints in some bodies and strings in others.
        if request_id.isdigit() and (source or self._random).random() < 0.7:
            return int(request_id)
        return request_id

    def _processing(self, job: SimulatedJob, now: float, fetch_url: str) -> dict[str, Any]:
        remaining = job.ready_at - now
        bias = job.eta_bias
        if bias is None:
            bias = 1 + self._random.uniform(-self.eta_error, self.eta_error)
        eta = remaining * bias
        return {
            "status": "processing",
            "tip": "Your image is processing in background, you can get this image using fetch API",
            "eta": f"{eta:.2f}" if self._random.random() < 0.2 else round(eta, 2),
            "messege": "Try to fetch request after seconds estimated",
            "fetch_result": fetch_url,
            "id": self._wire_id(job.request_id),
            "output": [],
            "meta": job.meta,
            "future_links": self._links(job),
        }

    def _finished(self, job: SimulatedJob, source: random.Random | None = None) -> dict[str, Any]:
        rng = source or self._random
        if job.final == "success":
            extra: dict[str, Any] = {}
            if job.kind == "audio":  # the voice endpoints add these
                extra = {"links": self._links(job), "audio_time": round(1.0 + job.images, 2)}
            elif job.kind == "3d":
                extra = {"extra_assets": []}
            return {
                **extra,
                "status": "success",
                "generationTime": round(rng.uniform(0.8, 9.0), 2),
                "id": self._wire_id(job.request_id, rng),
                "output": self._links(job),
                "proxy_links": self._links(job),
                "meta": job.meta,
                "nsfw_content_detected": rng.choice((False, "false")),
                "webhook_status": "",
                "tip": "Get 20% off on your first purchase",
            }
        if job.final == "failed":
            return {
                "status": "failed",
                "id": self._wire_id(job.request_id, rng),
                "message": "Image generation failed, please try again",
                "output": [],
            }
        return {"status": "error", "messege": "Something went wrong while generating"}

    def _links(self, job: SimulatedJob) -> list[str]:
        ext = KIND_FILES[job.kind][0]
        return [f"{self.image_base_url}/{job.request_id}-{n}.{ext}" for n in range(job.images)]


def _webhook_targets(
    count: int, webhook: str | None, webhooks: Sequence[Mapping[str, object]] | None
) -> list[tuple[str | None, str | int | None]]:
    """Each job's (webhook, track_id), every one checked: `ValueError` before any job."""
    if webhooks is None:
        checked = None if webhook is None else checked_webhook(webhook)
        return [(checked, None)] * count
    if webhook is not None:
        raise ValueError("give webhook (one for every job) or webhooks (one per job), not both")
    if isinstance(webhooks, str | bytes) or len(webhooks) != count:
        raise ValueError(f"webhooks must give one {{webhook, track_id}} per job: {count} of them")
    targets = []
    for n, target in enumerate(webhooks):
        if not isinstance(target, Mapping) or "webhook" not in target:
            raise ValueError(
                f"webhooks[{n}] must be a mapping with a webhook (and a track_id if you like)"
            )
        url = target["webhook"]
        try:
            targets.append(
                (
                    None if url is None else checked_webhook(url),
                    checked_track_id(target.get("track_id")),
                )
            )
        except ValueError as problem:
            raise ValueError(f"webhooks[{n}]: {problem}") from None
    return targets


def _checked_model(model: str) -> EtaErrorModel:
    if model not in ETA_ERROR_MODELS:
        raise ValueError(f"eta_error_model must be 'per_answer' or 'per_job', not {model!r}")
    return model
