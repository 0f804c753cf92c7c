"""The simulated ModelsLab queue: jobs with ready times, and the bodies the real API sends."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import endpoint_table
from ._media import KIND_FILES

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
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "images"
    """What the job outputs: `images`, `video`, `audio`, `3d` or `text` (its endpoint's)."""
    eta_bias: float | None = None
    """The factor every `eta` of this job is off by (per-job errors), or None for an
    error drawn afresh for each answer."""


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
        clock: Monotonic seconds; `time.monotonic` by default.

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
    ) -> str:
        """Queue one job that finishes `ready_in` seconds from now; return its id.

        `kind` is what it outputs (`images`, `video`, `audio`, `3d`, `text`); `images`
        is how many files. `eta_error_model` overrides the simulator's for this job.
        """
        if kind not in KIND_FILES:
            raise ValueError(f"kind must be one of {', '.join(KIND_FILES)}, not {kind!r}")
        model = self.eta_error_model if eta_error_model is None else eta_error_model
        model = _checked_model(model)
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
            self._jobs[rid] = job
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
    ) -> dict[str, Any]:
        """Queue a job on `endpoint` (a table name); return its generation response.

        The response is what ModelsLab answers a queued generation request: `processing`,
        the id, an `eta`, and `fetch_result` in its path form below `base_url` (by default
        this simulator's API root, once served), so `wait_for` can take it as it is.
        """
        table = endpoint_table()
        if endpoint not in table:
            raise ValueError(f"no endpoint named {endpoint!r}; use one of: {', '.join(table)}")
        row = table[endpoint]
        rid = self.queue(ready_in=ready_in, final=final, request_id=request_id, kind=row.output)
        root = (base_url or self.api_base_url).rstrip("/")
        template = row.path_template if "{id}" in row.path_template else row.path_template + "/{id}"
        job = self._jobs[rid]
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
    ) -> list[str]:
        """Queue `count` jobs, ready uniformly within `ready_in` seconds, some failing."""
        ids = []
        for _ in range(count):
            with self._lock:
                delay = self._random.uniform(*ready_in)
                final: FinalStatus = (
                    self._random.choice(("failed", "error"))
                    if self._random.random() < failure_rate
                    else "success"
                )
            ids.append(self.queue(ready_in=delay, final=final, eta_error_model=eta_error_model))
        return ids

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

    def _wire_id(self, request_id: str) -> int | str:
        # The real API sends numeric ids as ints in some bodies and strings in others.
        if request_id.isdigit() and self._random.random() < 0.7:
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

    def _finished(self, job: SimulatedJob) -> dict[str, Any]:
        if job.final == "success":
            extra: dict[str, Any] = {}
            if job.kind == "audio":  # the voice endpoints add these
                extra = {"links": self._links(job), "audio_time": round(1.0 + job.images, 2)}
            elif job.kind == "3d":
                extra = {"extra_assets": []}
            return {
                **extra,
                "status": "success",
                "generationTime": round(self._random.uniform(0.8, 9.0), 2),
                "id": self._wire_id(job.request_id),
                "output": self._links(job),
                "proxy_links": self._links(job),
                "meta": job.meta,
                "nsfw_content_detected": self._random.choice((False, "false")),
                "webhook_status": "",
                "tip": "Get 20% off on your first purchase",
            }
        if job.final == "failed":
            return {
                "status": "failed",
                "id": self._wire_id(job.request_id),
                "message": "Image generation failed, please try again",
                "output": [],
            }
        return {"status": "error", "messege": "Something went wrong while generating"}

    def _links(self, job: SimulatedJob) -> list[str]:
        ext = KIND_FILES[job.kind][0]
        return [f"{self.image_base_url}/{job.request_id}-{n}.{ext}" for n in range(job.images)]


def _checked_model(model: str) -> EtaErrorModel:
    if model not in ETA_ERROR_MODELS:
        raise ValueError(f"eta_error_model must be 'per_answer' or 'per_job', not {model!r}")
    return model
